"""Run directories made by hand for the export and inspect tests (no training needed).

`make_run` compiles a spec, moves every weight off its initial value (so masks, norm biases
and batch-norm statistics are all non-trivial) and writes what `wirelang train` writes:
spec.wire, config.json, metrics.jsonl and checkpoints/best.pt.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from wirelang.backend.api import compile_network
from wirelang.frontend import build


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
    try:
        from wirelang.train.checkpoint import save
    except ImportError:
        torch.save({"model": state}, path)
    else:
        save(path, {"model": state})


def make_run(root: Path, spec: str | Path, seed: int = 0, name: str = "run", model_hook=None) -> Path:
    """A run directory for `spec` with perturbed weights; `model_hook(model)` may set more."""
    spec = Path(spec)
    net = build(spec)
    model = compile_network(net)
    perturb(model, seed)
    if model_hook is not None:
        model_hook(model)
    run = root / name
    run.mkdir(parents=True)
    shutil.copy(spec, run / "spec.wire")
    (run / "config.json").write_text(json.dumps({"network": net.name, "spec": "spec.wire", "train": net.train}))
    names = [g.name for g in net.graphs()] + [x.path for x in net.layers() if x.sparse is not None]
    rows = [{"epoch": e, "edges_swapped": {n: 10 - 3 * e for n in names}} for e in range(1, 4)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_checkpoint(run / "checkpoints" / "best.pt", model.state_dict())
    return run
