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


def test_a_cpu_run_resumed_on_gpus_starts_its_ranks_on_gpus(tmp_path, monkeypatch):
    # `wirelang train --resume RUN --gpus 2` of a run begun on the CPU: the launcher starts its
    # ranks with the device, since config.json still names the CPU; each rank then plans CUDA
    # (before, each read the CPU back and trained there with gloo and one thread)
    import subprocess

    from export_runs import make_run

    from wirelang.train import TrainOptions, distributed, train

    spec = tmp_path / "small.wire"
    spec.write_text((ROOT / "specs" / "quickstart.wire").read_text())
    run = make_run(tmp_path, spec)
    started = []

    class Done:
        def __init__(self, argv, **kwargs):
            started.append(argv)

        def poll(self):
            return 0

    monkeypatch.setattr(subprocess, "Popen", Done)
    assert distributed.launch(spec, run, 2, "cuda") == 0
    assert len(started) == 2 and all(argv[-2:] == ["--device", "cuda"] for argv in started)
    argv = started[1]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for key, value in dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(distributed.LAUNCHED_ENV, "1")
    options = TrainOptions(spec=argv[4], resume=argv[6], device=argv[8], dry_run=True)
    plan = train(options, say=lambda *_: None)
    assert (plan["device"], plan["world_size"]) == ("cuda", 2)


def test_a_run_without_a_gradient_scaler_resumes_with_one():
    # a run begun on the CPU (or in bf16) saved an empty scaler state; resumed inside its
    # phase on a GPU in fp16, the scaler is enabled and starts afresh (GradScaler refuses an
    # empty state; a CPU scaler, enabled here, does the same as CUDA's)
    from types import SimpleNamespace

    from wirelang.train.loop import TrainState, _start_phase, build_optimizer
    from wirelang.train_config import TrainConfig

    model = nn.Linear(3, 2)
    spec = TrainConfig().optimizer
    saved = build_optimizer(model, spec).state_dict()
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    loop = SimpleNamespace(model=model, scaler=scaler, ema=None, say=print)
    state = TrainState(phase=1, epoch=1, optimizer=saved, scaler={})
    optimizer = _start_phase(loop, SimpleNamespace(number=1, optimizer=spec), state, fresh=False)
    assert optimizer.state_dict()["param_groups"] == saved["param_groups"]
    assert scaler.is_enabled() and scaler.get_scale() == 2.0**16  # its initial scale


def test_a_checkpoint_of_more_gpus_restores_the_generators_this_machine_has(monkeypatch):
    # a run checkpointed with two GPUs resumed on one (allowed, not bit-exact): one CUDA
    # generator restored, not an index error
    from wirelang.runs.checkpoint import rng_state, set_rng_state

    state = rng_state()
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in (1, 2)]
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, d: restored.append((int(s[0]), d)))
    set_rng_state(state)
    assert restored == [(1, 0)]


def test_the_compact_plan_reads_its_tables_by_kind_of_device():
    # `SPARSE_BELOW`, `MERGE_BELOW` and `CHANNEL_MULTIPLE` are per kind of device: cuda:1 is
    # planned as cuda, torch.device("cpu") as cpu (before, it fell back to the GPU's values)
    from wirelang.export.compact import plan_network

    torch.manual_seed(0)
    net = build(ROOT / "specs" / "quickstart.wire")
    model = compile_network(net).eval()

    def forms(device):
        plan = plan_network(net, model, device=device)
        return plan.device, plan.merge_below, [g.forms() for g in plan.graphs]

    cpu, cuda = forms("cpu"), forms("cuda")
    assert cpu[2][0]["sparse_blocks"] > 0 and cuda[2][0]["sparse_blocks"] == 0
    assert forms(torch.device("cpu")) == cpu and forms("cuda:1") == cuda
