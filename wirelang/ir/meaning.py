"""What a network computes, as data: the IR without source positions. Torch-free.

`spec_hash` identifies a network in checkpoints and run folders (a resumed run, a checkpoint
loaded into a spec); `network_meaning` keys reproduction series. Comments, formatting and the
place a spec was written change neither.

The data keeps one shape across changes to the IR's Python types: budgets and semantics are
typed per kind (`core.CountBudget`, `core.ContinuousSemantics`, ...), but they are written as
they were when the IR had one untyped model for each, a budget as {kind, count, fraction, pool,
k} and a semantics as {kind, params}. Run folders, checkpoints, result files and `generated/`
are named by this data, so a new Python type must not rename a network that computes the same
thing; `tests/test_meaning.py` pins the hashes of shipped specs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from wirelang.ir import core

_POSITIONS = ("span", "train_spans")
_BUDGET_FIELDS = ("count", "fraction", "pool", "k")


def spec_hash(net: core.Network) -> str:
    """A hash of the network's meaning (the IR without spans), for checkpoints and resume."""
    data = ir_data(net, exclude=set(_POSITIONS))
    return hashlib.sha256(_strip_spans(data).encode()).hexdigest()[:16]


def network_meaning(net: core.Network) -> dict:
    """The network as plain data without source positions or training settings: what it
    computes, whatever the comments, formatting or `train` block of its spec."""
    return json.loads(_strip_spans(ir_data(net, exclude={*_POSITIONS, "train"})))


def ir_data(net: core.Network, exclude: set[str] | None = None) -> dict:
    """The IR as JSON data in its stable shape (see the module docstring); `exclude` names
    top-level fields of the network to leave out."""
    return _stable(net, json.loads(net.model_dump_json(exclude=exclude)))


def _stable(obj: Any, data: Any) -> Any:
    """`data` (pydantic's JSON dump of `obj`) with typed budgets and semantics in their stable
    shape. Walks the models beside their dump, so a key that merely shares a name is untouched."""
    if isinstance(obj, core.BUDGET_TYPES):
        return {**data, **{f: data.get(f) for f in _BUDGET_FIELDS}}
    if isinstance(obj, tuple(core.SEMANTICS_TYPES.values())):
        kept = {key: data[key] for key in ("span", "kind") if key in data}
        return {**kept, "params": {key: v for key, v in data.items() if key not in kept}}
    if isinstance(obj, BaseModel):
        for name, value in data.items():
            data[name] = _stable(getattr(obj, name), value)
    elif isinstance(obj, list) and obj and isinstance(obj[0], BaseModel):
        return [_stable(o, d) for o, d in zip(obj, data, strict=True)]
    return data


def _strip_spans(data: Any) -> str:
    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in _POSITIONS}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o

    return json.dumps(strip(data), sort_keys=True)
