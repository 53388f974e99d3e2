"""Run directories for the export and inspect tests, without training.

`make_run` compiles a spec, moves every weight off its initial value (so masks, norm biases
and batch-norm statistics are all non-trivial) and writes the run through the code the trainer
uses (`prepare_run`, `MetricsLog`, `checkpoint.save`): spec.wire, config.json, metrics.jsonl and
checkpoints/best.pt.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wirelang.backend.api import compile_network
from wirelang.frontend import build
from wirelang.runs import checkpoint
from wirelang.runs.layout import BEST, CHECKPOINTS, MetricsLog
from wirelang.train.runs import RunPlan, prepare_run, resolve_config


@torch.no_grad()
def perturb(model, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(0.5 * torch.randn(p.shape, generator=gen))
    for name, b in model.named_buffers():
        if name.endswith("running_var"):
            b.copy_(0.5 + torch.rand(b.shape, generator=gen))
        elif name.endswith("running_mean"):
            b.copy_(0.1 * torch.randn(b.shape, generator=gen))


def save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(path, {"model": state})


def make_run(
    root: Path, spec: str | Path, seed: int = 0, name: str = "run", model_hook=None
) -> Path:
    """A run directory for `spec` with perturbed weights; `model_hook(model)` may set more."""
    spec = Path(spec)
    net = build(spec)
    model = compile_network(net)
    perturb(model, seed)
    if model_hook is not None:
        model_hook(model)
    run = root / name
    prepare_run(RunPlan(spec_path=spec, net=net, config=resolve_config(net, {}), run_dir=run))
    names = [g.name for g in net.graphs()] + [x.path for x in net.layers() if x.sparse is not None]
    log = MetricsLog(run)
    for e in range(1, 4):
        log.append({"phase": 1, "epoch": e, "edges_swapped": {n: 10 - 3 * e for n in names}})
    save_checkpoint(run / CHECKPOINTS / BEST, model.state_dict())
    return run
