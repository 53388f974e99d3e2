"""The IR's typed wirings and inits (`core.WIRING_TYPES`, `core.INIT_TYPES`).

`methods.WIRINGS` and `methods.INITS` own each method's parameters (names, order, types,
defaults); the typed models must declare exactly those, every method must survive the
formatter and the frozen export with non-default parameters, and a value of the wrong type is
refused: in a spec with a located message, in Python by the strict model.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from wirelang import methods
from wirelang.backend.api import compile_network
from wirelang.diagnostics import UNKNOWN, SpecError
from wirelang.export.frozen import frozen_wire
from wirelang.fmt import format_text
from wirelang.frontend import build
from wirelang.ir import core
from wirelang.ir.meaning import network_meaning
from wirelang.ops import ParamSpec

PY_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def annotation(p: ParamSpec, resolved: bool = False) -> object:
    """The field type a registry parameter becomes; `resolved`: the builder always fills it."""
    base = PY_TYPES[p.type.rstrip("?")]
    return base | None if p.type.endswith("?") and not resolved else base


def own_fields(model: type, skip: tuple[str, ...]) -> dict:
    return {n: f for n, f in model.model_fields.items() if n not in skip}


def test_every_registered_method_has_a_model():
    assert list(core.WIRING_TYPES) == list(methods.WIRINGS)
    assert list(core.INIT_TYPES) == list(methods.INITS)
    members = typing.get_args(typing.get_args(core.Wiring)[0])
    assert set(members) == set(core.WIRING_TYPES.values())


@pytest.mark.parametrize("name", list(methods.WIRINGS))
def test_wiring_models_hold_the_registry_parameters(name):
    """Names, order and types from the registry, no default of their own (the registry's are
    the only ones); a method that lists its edges also has `fixed` and its spans."""
    model, spec = core.WIRING_TYPES[name], methods.WIRINGS[name]
    fields = own_fields(model, ("span", "method", "fixed", "fixed_spans"))
    assert list(fields) == [p.name for p in spec.params]
    assert all(fields[p.name].annotation == annotation(p) for p in spec.params)
    assert all(f.is_required() for f in fields.values())
    assert ("fixed" in model.model_fields) == spec.edges_listed
    assert model.model_config["strict"] and model.model_config["frozen"]


@pytest.mark.parametrize("kind", list(methods.INITS))
def test_init_models_hold_the_registry_parameters_resolved(kind):
    model, spec = core.INIT_TYPES[kind], methods.INITS[kind]
    fields = own_fields(model, ("span", "kind"))
    assert list(fields) == [p.name for p in spec.params]
    assert all(fields[p.name].annotation == annotation(p, resolved=True) for p in spec.params)
    assert all(f.is_required() for f in fields.values())


def test_new_wiring_fills_the_registry_defaults():
    w = methods.new_wiring("targeted_dropout", rho=0.5)
    assert isinstance(w, core.TargetedDropoutWiring)
    assert (w.rho, w.scope) == (0.5, "graph")
    assert methods.new_wiring("l1_anneal").parameters() == {"strength": 1e-4, "end": 0.75}
    assert methods.new_wiring("random").seed is None
    assert methods.new_wiring("dnw").rank == "candidates"
    with pytest.raises(ValidationError, match="nope"):
        methods.new_wiring("dnw", nope=1)


def test_a_property_without_the_parameter_it_reads_is_refused():
    with pytest.raises(ValueError, match="^x: `stochastic_mask` reads the parameter `rho`$"):
        methods.WiringSpec("x", (), "", stochastic_mask=True)
    with pytest.raises(ValueError, match="^x: `mask_fixed_at_start` reads the parameter `seed`$"):
        methods.WiringSpec("x", (), "", mask_fixed_at_start=True)


def non_default(p: ParamSpec) -> object:
    """A value of `p`'s type that is not its default and within its limits."""
    if p.choices:
        return next(c for c in p.choices if c != p.default)
    if p.type.rstrip("?") == "float":
        return 0.5 if p.default != 0.5 else 0.25
    if p.type.rstrip("?") == "int":
        return 7 if p.default != 7 else 8
    if p.type == "bool":
        return not p.default
    raise AssertionError(f"no test value for a {p.type} parameter: add one here")


def written(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def wiring_text(name: str) -> tuple[str, dict]:
    """`wiring NAME(...)` with every parameter at a non-default value, and those values."""
    values = {p.name: non_default(p) for p in methods.WIRINGS[name].params}
    if methods.WIRINGS[name].edges_listed:
        return "wiring fixed { a[0] -> b[1, 2]\n a[3] -> c[4] }", values
    args = ", ".join(f"{k}={written(v)}" for k, v in values.items())
    return f"wiring {name}" + (f"({args})" if args else ""), values


GRAPH = """\
network n {
  input image(4, 8, 8)
  classes 3
  graph g {
    nodes a[4] input op(instancenorm, relu)
    nodes b[6] op(instancenorm, relu)
    nodes c[5] output
    edges forward(a, b, c)
    BUDGET
    WIRING
    semantics static
  }
  head { avgpool, linear(classes) }
}
"""


def graph_spec(name: str) -> tuple[str, dict]:
    text, values = wiring_text(name)
    spec = methods.WIRINGS[name]
    budget = "" if spec.dense or spec.edges_listed else "budget 20"
    return GRAPH.replace("BUDGET", budget).replace("WIRING", text), values


def without_span(w: core.Wiring) -> dict:
    return w.model_dump(exclude={"span"})  # `fixed_spans` is left out of every dump


def assert_typed(w: core.Wiring, name: str, values: dict) -> None:
    assert type(w) is core.WIRING_TYPES[name] and w.method == name
    for key, value in values.items():
        got = getattr(w, key)
        assert got == value and type(got) is type(value), (key, got, value)


@pytest.mark.parametrize("name", list(methods.WIRINGS))
def test_graph_wiring_round_trips_through_fmt(tmp_path: Path, name: str):
    text, values = graph_spec(name)
    net = build(tmp_path / "a.wire", text)
    (g,) = net.graphs()
    assert_typed(g.wiring, name, values)
    if methods.WIRINGS[name].edges_listed:
        assert g.wiring.fixed == [("a", 0, "b", 1), ("a", 0, "b", 2), ("a", 3, "c", 4)]
    formatted = format_text(text)
    assert formatted != text  # the formatter did rewrite it
    again = build(tmp_path / "b.wire", formatted)
    (g2,) = again.graphs()
    assert_typed(g2.wiring, name, values)
    assert without_span(g2.wiring) == without_span(g.wiring)
    assert network_meaning(again) == network_meaning(net)


SPARSE = """\
network n {
  input image(3, 8, 8)
  classes 3
  stem { conv(8, k=3), relu, conv(8, k=3), relu }
  sparse {
    layers conv
    budget 50%
    WIRING
  }
  head { avgpool, linear(classes) }
}
"""

# A sparse layer's mask and method survive the frozen export (a graph's become `wiring fixed`).
LAYER_METHODS = [n for n, s in methods.WIRINGS.items() if not s.edges_listed]


@pytest.mark.parametrize("name", LAYER_METHODS)
def test_sparse_layer_wiring_round_trips_through_the_frozen_export(tmp_path: Path, name: str):
    text, values = wiring_text(name)
    net = build(tmp_path / "a.wire", SPARSE.replace("WIRING", text))
    wirings = [x.sparse.wiring for x in net.layers() if x.sparse is not None]
    assert len(wirings) == 2
    for w in wirings:
        assert_typed(w, name, values)
    torch.manual_seed(0)
    frozen = frozen_wire(net, compile_network(net))
    assert f"  {text}\n" in frozen  # non-default values are written out
    again = build(tmp_path / "frozen.wire", frozen)
    for w, w2 in zip(
        wirings, [x.sparse.wiring for x in again.layers() if x.sparse is not None], strict=True
    ):
        assert_typed(w2, name, values)
        assert without_span(w2) == without_span(w)


def test_graph_init_round_trips_through_the_frozen_export(tmp_path: Path):
    text = GRAPH.replace("BUDGET", "budget 20").replace("WIRING", "wiring dnw\n init normal(0.3)")
    net = build(tmp_path / "a.wire", text)
    torch.manual_seed(0)
    again = build(tmp_path / "frozen.wire", frozen_wire(net, compile_network(net)))
    for g in (net.graphs()[0], again.graphs()[0]):
        assert isinstance(g.init, core.NormalInit) and g.init.std == 0.3
        assert g.init.parameters() == {"std": 0.3}


# One wrong-typed value per kind of parameter, and the located message a spec gets for it.
WRONG = [
    ("targeted_dropout(rho=true)", 33, "`rho` must be a number, found `true`"),
    ("targeted_dropout(scope=3)", 35, "`scope` must be a name, found 3"),
    ("random(seed=1.5)", 24, "`seed` must be an integer, found 1.5"),
    ("dnw(rank=0.5)", 21, "`rank` must be a name, found 0.5"),
    ("l1_anneal(end=other)", 26, "unknown name `other`"),
]


@pytest.mark.parametrize(("call", "col", "message"), WRONG)
def test_a_wrong_typed_parameter_is_a_located_error(tmp_path: Path, call, col, message):
    text = GRAPH.replace("BUDGET", "budget 20").replace("WIRING", f"wiring {call}")
    with pytest.raises(SpecError) as err:
        build(tmp_path / "a.wire", text)
    (diag,) = err.value.diagnostics
    assert (diag.span.line, diag.span.col, diag.message) == (10, col, message)


def test_the_models_refuse_a_wrong_type_instead_of_converting_it():
    with pytest.raises(ValidationError, match="rho"):
        core.TargetedDropoutWiring(span=UNKNOWN, rho="0.5", scope="graph")
    with pytest.raises(ValidationError, match="seed"):
        methods.new_wiring("random", seed=1.5)
    with pytest.raises(ValidationError, match="fan"):
        core.UniformInit(span=UNKNOWN, fan=None)
    with pytest.raises(ValidationError, match="rank"):
        methods.new_wiring("targeted_dropout", rank="square")  # not a parameter of its own
    # an int is a float's value as it stands (the builder converts it the same way)
    assert methods.new_wiring("targeted_dropout", rho=1).rho == 1.0
