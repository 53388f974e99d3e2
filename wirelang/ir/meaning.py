"""What a network computes, as data: the IR without source positions. Torch-free.

`spec_hash` identifies a network in checkpoints and run folders (a resumed run, a checkpoint
loaded into a spec); `network_meaning` keys reproduction series. Comments, formatting and the
place a spec was written change neither.
"""

from __future__ import annotations

import hashlib
import json

from wirelang.ir import core

_POSITIONS = ("span", "train_spans")


def spec_hash(net: core.Network) -> str:
    """A hash of the network's meaning (the IR without spans), for checkpoints and resume."""
    data = net.model_dump_json(exclude=set(_POSITIONS))
    return hashlib.sha256(_strip_spans(data).encode()).hexdigest()[:16]


def network_meaning(net: core.Network) -> dict:
    """The network as plain data without source positions or training settings: what it
    computes, whatever the comments, formatting or `train` block of its spec."""
    return json.loads(_strip_spans(net.model_dump_json(exclude={*_POSITIONS, "train"})))


def _strip_spans(text: str) -> str:
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in _POSITIONS}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return json.dumps(strip(json.loads(text)), sort_keys=True)
