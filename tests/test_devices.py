"""Models that move between devices and dtypes, and devices this machine has not got.

No GPU is here, so a CUDA device is simulated: `meta` tensors (no data, real device checks) and
torch's FakeTensorMode (fake "cuda" tensors, real device checks). The errors these tests guard
against are device mismatches, which both report as a CUDA run would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

import wirelang
from wirelang import methods
from wirelang.backend.api import compile_network
from wirelang.backend.modules import SparseConv2d
from wirelang.frontend import build

ROOT = Path(__file__).resolve().parent.parent


def test_evaluation_caches_follow_the_model_to_another_dtype():
    # `module.to()` / `.double()` replace each parameter's data and keep its identity and
    # version: the masks' evaluation caches must not hand back the old weights (float32 here,
    # another device's on a GPU machine)
    torch.manual_seed(0)
    model = compile_network(build(ROOT / "specs" / "mbv1_cifar_lottery.wire")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        single = model(x)  # fills the caches with float32 tensors
        model.double()
        double = model(x.double())
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["random", "lottery_one_shot", "dnw"])
def test_sparsify_keeps_the_masks_on_the_weights_device(method):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).to("meta")
    model = wirelang.sparsify(model, 0.5, method=method)
    for layer in (model[0], model[2]):
        assert {b.device.type for b in layer.mask.buffers()} == {"meta"}
    if method == "random":  # a mask fixed at the start: no selection, which meta cannot run
        assert model(torch.empty(2, 3, 8, 8, device="meta")).device.type == "meta"


def test_targeted_dropout_per_node_runs_on_the_weights_device():
    wiring = methods.new_wiring("targeted_dropout").model_copy(update={"scope": "node"})
    conv = SparseConv2d(8, 8, 3)
    conv.attach_mask(wiring, 100, seed=0)
    conv.train()
    with FakeTensorMode(allow_non_fake_inputs=True):
        conv.to("cuda")  # as the training loop moves the model
        (top,) = conv.mask._per_node_topk(conv.mask.weights())
        assert top.device.type == "cuda" and top.shape == conv.weight.shape
