"""What a network computes, as data: the IR without source positions. Torch-free.

`spec_hash` identifies a network in checkpoints and run folders (a resumed run, a checkpoint
loaded into a spec); `network_meaning` keys reproduction series. Comments, formatting and the
place a spec was written change neither.

The data keeps one shape across changes to the IR's Python types: budgets, semantics, wirings
and inits are typed per kind or method (`core.CountBudget`, `core.ContinuousSemantics`,
`core.TargetedDropoutWiring`, `core.UniformInit`, ...), but they are written as they were when
the IR had one untyped model for each: a budget as {kind, count, fraction, pool, k}, a semantics
as {kind, params}, a wiring as {method, params, fixed} and an init as {kind, params}. A wiring's
`implicit` parameters (`methods.WIRINGS`' `ParamSpec.implicit`, such as dnw's `rank`) are left
out while they hold their default: they were added after networks were named by this data. Run
folders, checkpoints, result files and `generated/` are named by it, so a new Python type or
parameter must not rename a network that computes the same thing; `tests/test_meaning.py` pins
the hashes of shipped specs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from wirelang import methods
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
    if isinstance(obj, (*core.SEMANTICS_TYPES.values(), *core.INIT_TYPES.values())):
        kept = {key: data[key] for key in ("span", "kind") if key in data}
        return {**kept, "params": {key: v for key, v in data.items() if key not in kept}}
    if isinstance(obj, tuple(core.WIRING_TYPES.values())):
        spec = methods.WIRINGS[obj.method]
        params = {
            p.name: data[p.name]
            for p in spec.params
            if not (p.implicit and getattr(obj, p.name) == p.default)
        }
        kept = {key: data[key] for key in ("span", "method") if key in data}
        return {**kept, "params": params, "fixed": data.get("fixed")}
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
