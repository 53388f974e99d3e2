"""Evaluations per forward pass: the count `wirelang compile --json` reports is the count the
compiled model performs (discrete steps; fixed-step ODE solvers' derivative evaluations)."""

from __future__ import annotations

import textwrap

import pytest
import torch

from wirelang.backend.api import compile_network
from wirelang.cost import summary
from wirelang.frontend import build

SPEC = """\
network ode {{
  input image(1, 8, 8)
  classes 3
  stem {{
    conv(4, k=1)
  }}
  graph g {{
    nodes a[4] input op(instancenorm, relu)
    nodes b[6] op(instancenorm, relu)
    nodes out[4] output op(instancenorm, dwconv(k=3))
    edges all(a, b, out, self_loops=true)
    budget 40
    wiring dnw
    semantics {semantics}
  }}
  head {{
    avgpool, linear(classes)
  }}
}}
"""


@pytest.mark.parametrize(
    ("semantics", "expected"),
    [
        ("continuous(time=1, solver=rk4, step_size=0.25)", 16),
        ("continuous(time=1, solver=euler, step_size=0.3)", 4),  # grid 0, .3, .6, .9, 1
        ("continuous(time=2, solver=midpoint)", 20),  # step_size defaults to time / 10
        # two rk4 steps (4 evaluations each) until three past derivatives exist, then one a step
        ("continuous(time=1, solver=explicit_adams, step_size=0.125)", 14),
        ("continuous(time=1, solver=explicit_adams, step_size=0.5)", 8),
    ],
)
def test_fixed_step_evaluations_match_the_solver(tmp_path, semantics, expected):
    path = tmp_path / "ode.wire"
    path.write_text(textwrap.dedent(SPEC.format(semantics=semantics)))
    net = build(path)
    g = summary(net)["graphs"][0]
    assert g["evaluations_per_forward"] == expected
    assert g["macs_per_forward"] == g["macs_per_evaluation"] * expected
    model = compile_network(net, seed=0)
    model(torch.randn(2, 1, 8, 8))
    assert model.nfe() == {"g": expected}


def test_adaptive_solver_has_no_fixed_count_and_discrete_counts_its_steps(tmp_path):
    path = tmp_path / "ode.wire"
    path.write_text(SPEC.format(semantics="continuous(time=1)"))
    out = summary(build(path))
    assert out["graphs"][0]["evaluations_per_forward"] is None
    assert out["macs_per_forward"] is None
    path.write_text(SPEC.format(semantics="discrete(steps=7)"))
    out = summary(build(path))
    g = out["graphs"][0]
    assert g["semantics_params"] == {"steps": 7}
    assert g["evaluations_per_forward"] == 7
    assert g["macs"] == g["macs_per_forward"] == 7 * g["macs_per_evaluation"]
    assert out["macs_per_forward"] == out["macs"]
