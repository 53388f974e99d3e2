"""Every shipped spec compiles to a module whose parameters (each wiring at its budget) equal
the analytic count; one spec of each family and semantics runs forward and backward at its
declared input size (all of them with WIRELANG_SLOW=1: ImageNet-size and adaptive-ODE specs
take minutes on two cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from wirelang.backend.api import compile_network
from wirelang.cost import summary
from wirelang.frontend import build

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.wire"))
RUN_ALWAYS = {"cifar_tiny", "cifar_tiny_discrete", "fmnist_tiny_continuous", "mbv1_cifar_dnw", "mbv1_dnw_small_x15",
              "resnet50_sparse_first_dense10"}
SLOW = os.environ.get("WIRELANG_SLOW") == "1"


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_module_params_equal_the_analytic_count(spec):
    net = build(spec)
    model = compile_network(net)
    assert model.count_params() == summary(net)["params"]


@pytest.mark.parametrize("spec", [s for s in SPECS if SLOW or s.stem in RUN_ALWAYS], ids=lambda s: s.stem)
def test_spec_runs_forward_and_backward(spec):
    net = build(spec)
    model = compile_network(net)
    c, h, w = net.input.channels, net.input.height, net.input.width
    batch = 2 if h * w <= 64 * 64 else 1
    out = model(torch.randn(batch, c, h, w))
    assert out.shape == (batch, net.classes)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, mask in model.masks().items():
        assert all(wt.grad is not None for wt in mask.weights()), name
    for g in net.graphs():
        if g.semantics.kind == "continuous":
            assert model.nfe()[g.name] > 0
