"""A network's identity (`spec_hash`, `network_meaning`) survives changes to the IR's Python types.

Run folders, checkpoints, the reproduction scripts' result files and `generated/` are named by
it. The hashes below were computed on the code before budgets and semantics were typed per kind
(one `Budget` with optional fields, one `Semantics` with an untyped `params` dict); a type change
that renames a network which computes the same thing fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from wirelang import methods
from wirelang.diagnostics import Span
from wirelang.frontend import build
from wirelang.ir import core
from wirelang.ir.meaning import network_meaning, spec_hash

ROOT = Path(__file__).resolve().parents[1]

SHIPPED = {
    "quickstart": "c968dcabab96376b",  # static
    "cifar_tiny": "24bb8429463d6913",  # static, a count budget
    # discrete(steps=5); the discrete specs changed on purpose in session 6 (every node, the
    # outputs included, sends relu -> dwconv: tests/test_authors_recursion.py)
    "cifar_tiny_discrete": "115e7951d6bccb2e",
    "cifar_tiny_continuous": "7eb8b0b22a8123e1",  # continuous, adaptive solver
    "fmnist_tiny_discrete_random": "d29080c3d9c3aafd",
    "mbv1_cifar_l1_anneal": "9ffed1e69313f729",  # wiring parameters
    "mbv1_cifar_targeted_dropout": "0517837ef2a67e56",
    "mbv1_dnw_small_x15": "910165e604b10ebc",  # a sparse linear layer, fraction budgets
    "resnet50_sparse_all10": "deb8af1b2cb292f7",  # sparse layers throughout
}

GRAPH = """network {name} {{
  input image(1, 12, 12)
  classes 4
  stem {{
    conv(8, k=3, stride=2), batchnorm
  }}
  graph g {{
    nodes i[8] input op(batchnorm, relu)
    nodes h[12] op(batchnorm, relu)
    nodes o[8] output
    edges {edges}
    budget {budget}
    wiring {wiring}
    semantics {sem}
    {init}
  }}
  head {{
    avgpool, linear(classes)
  }}
}}
"""

POOLED = """network pooled {
  input image(3, 16, 16)
  classes 10
  pool shared 10%
  stem {
    conv(16, k=3), batchnorm, relu
  }
  residual a {
    branch {
      conv(32, k=3, stride=2), batchnorm, relu
      conv(32, k=3), batchnorm
    }
    shortcut {
      conv(32, k=1, stride=2), batchnorm
    }
    after relu
  }
  graph g {
    nodes i[32] input op(batchnorm, relu, dwconv(k=3))
    nodes h[48] op(batchnorm, relu, dwconv(k=3))
    nodes o[24] output
    edges forward(i, h, o)
    budget pooled shared
    wiring dnw
  }
  head {
    avgpool, linear(classes)
  }
  sparse {
    layers conv, linear
    exclude stem.0
    budget pooled shared
    wiring dnw
  }
}
"""

# (name, the graph's fields, the hash before typing)
INLINE = [
    (
        "static_count_normal",
        dict(
            edges="forward(i, h, o)",
            budget="40",
            wiring="random(3)",
            sem="static",
            init="init normal(0.1)",
        ),
        "fcc5e7b8d5aa12a1",
    ),
    (
        "discrete3",
        dict(
            edges="all(i, h, o, self_loops=true)",
            budget="30%",
            wiring="targeted_dropout(0.5, scope=node)",
            sem="discrete(steps=3)",
            init="init kaiming",
        ),
        "95040f645778fa2b",
    ),
    (
        "ode_rk4",  # a fixed-step solver given no step size: the builder's default (time / 10)
        dict(
            edges="all(i, h, o)",
            budget="25%",
            wiring="dnw",
            sem="continuous(2.0, solver=rk4)",
            init="",
        ),
        "8f6fc99d8c630c45",
    ),
    (
        "ode_euler_step_adjoint",
        dict(
            edges="all(i, h, o)",
            budget="25%",
            wiring="dnw_no_update",
            sem="continuous(time=1.5, solver=euler, step_size=0.25, adjoint=true, rtol=1e-4, atol=1e-5)",
            init="",
        ),
        "c3dc0a7dc6d55afa",
    ),
    (
        "ode_adams",
        dict(
            edges="all(i, h, o)",
            budget="25%",
            wiring="random",
            sem="continuous(solver=explicit_adams, step_size=0.1)",
            init="",
        ),
        "23a43a2ddcb87f6c",
    ),
]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_spec_hashes_are_unchanged(name):
    assert spec_hash(build(ROOT / "specs" / f"{name}.wire")) == SHIPPED[name]


@pytest.mark.filterwarnings("ignore")  # the cyclic graphs' unbounded-recurrence warnings
@pytest.mark.parametrize(("name", "fields", "expected"), INLINE, ids=[c[0] for c in INLINE])
def test_semantics_and_budget_hashes_are_unchanged(tmp_path, name, fields, expected):
    net = build(tmp_path / f"{name}.wire", GRAPH.format(name=name, **fields))
    assert spec_hash(net) == expected


@pytest.mark.filterwarnings("ignore")  # a member expected to keep little of the pool
@pytest.mark.parametrize(
    ("method", "expected"), [("dnw", "01146470c8b8e629"), ("random", "2a25897236a123e9")]
)
def test_pooled_hashes_are_unchanged(tmp_path, method, expected):
    net = build(tmp_path / "pooled.wire", POOLED.replace("wiring dnw", f"wiring {method}"))
    assert isinstance(net.graphs()[0].budget, core.PooledBudget)
    assert spec_hash(net) == expected


def test_meaning_writes_budgets_and_semantics_in_their_untyped_shape():
    m = network_meaning(build(ROOT / "specs" / "cifar_tiny_continuous.wire"))
    (g,) = [i for i in m["items"] if i["kind"] == "graph"]
    assert g["budget"] == {
        "kind": "count",
        "count": 32000,
        "fraction": None,
        "pool": None,
        "k": 32000,
    }
    assert g["semantics"] == {
        "kind": "continuous",
        "params": {
            "time": 1.0,
            "solver": "dopri5",
            "rtol": 1e-3,
            "atol": 1e-3,
            "adjoint": False,
            "step_size": None,
        },
    }
    m = network_meaning(build(ROOT / "specs" / "mbv1_dnw_small_x15.wire"))
    (head,) = [i for i in m["items"] if i["kind"] == "layer" and i["path"] == "head.3"]
    assert head["sparse"]["budget"] == {
        "kind": "fraction",
        "count": None,
        "fraction": 0.15,
        "pool": None,
        "k": 153600,
    }


@pytest.mark.parametrize("kind", methods.list_semantics())
def test_semantics_models_hold_the_registry_parameters_without_defaults(kind):
    """`methods.SEMANTICS` owns the names, order and defaults; each typed model declares the
    same fields and no default of its own (the builder fills them from the registry)."""
    fields = {n: f for n, f in core.SEMANTICS_TYPES[kind].model_fields.items()}
    own = [n for n in fields if n not in ("span", "kind")]
    assert own == [p.name for p in methods.SEMANTICS[kind].params]
    assert all(fields[n].is_required() for n in own)


def test_budget_and_semantics_kinds_refuse_missing_or_foreign_fields():
    span = Span(path="x.wire", line=1, col=1, end_line=1, end_col=2)
    with pytest.raises(ValidationError, match="count"):
        core.CountBudget(span=span)
    with pytest.raises(ValidationError, match="fraction"):
        core.CountBudget(span=span, count=3, fraction=0.5)
    with pytest.raises(ValidationError, match="steps"):
        core.DiscreteSemantics(span=span)
    with pytest.raises(ValidationError, match="params"):
        core.StaticSemantics(span=span, params={})
    # a pool's own budget is a count or a fraction, never another pool
    with pytest.raises(ValidationError):
        core.Pool(span=span, name="p", budget=core.PooledBudget(span=span, pool="q"))
