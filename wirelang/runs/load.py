"""A run directory (or a spec) as a model: what `wirelang.load`, `eval`, `inspect`, `draw` and
`export` work on. Every checkpoint is read through `wirelang.runs.checkpoint` (verified,
`weights_only=True`), whatever the folder holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from wirelang.backend.api import WiredModel, compile_network
from wirelang.frontend import build
from wirelang.ir import core
from wirelang.ir.meaning import spec_hash
from wirelang.runs.checkpoint import load_weights_into
from wirelang.runs.layout import SPEC, check_run_dir, read_config, read_metrics
from wirelang.runs.memory import check_memory


@dataclass
class Run:
    net: core.Network
    model: WiredModel  # in eval mode
    dir: Path | None = None
    checkpoint: Path | None = None
    metrics: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)  # config.json: the resolved train settings

    @property
    def train(self) -> dict:
        """The train settings the run used (command-line overrides applied), else the spec's."""
        return self.config.get("train") or self.net.train

    @property
    def label(self) -> str:
        """How generated files name their source: no absolute paths (they stay reproducible)."""
        if self.dir is None:
            return self.net.name
        ckpt = self.checkpoint
        inside = (
            f"/{ckpt.relative_to(self.dir)}"
            if ckpt is not None and ckpt.is_relative_to(self.dir)
            else ""
        )
        return f"{self.dir.name}{inside}"


def load_run_model(run_dir: str | Path, checkpoint: str | Path | None = None) -> WiredModel:
    """A trained run as a model in eval mode: its spec.wire with the checkpoint of its best
    epoch, as checkpoints/manifest.json records it (`runs.checkpoint.best_checkpoint`)."""
    return _load_model(Path(run_dir), checkpoint)[0]


def _load_model(run_dir: Path, checkpoint: str | Path | None) -> tuple[WiredModel, Path]:
    check_run_dir(run_dir)
    config = read_config(run_dir)
    net = build(run_dir / SPEC)
    check_memory(net)
    model = compile_network(net, seed=int(config["train"].get("seed", 0)))
    _, used = load_weights_into(
        model, checkpoint if checkpoint is not None else run_dir, spec_hash=spec_hash(net)
    )
    return model.eval(), used


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> Run:
    """The run's network, trained model (eval mode), metrics and configuration."""
    run_dir = Path(run_dir)
    model, ckpt = _load_model(run_dir, checkpoint)
    return Run(
        net=model.net,
        model=model,
        dir=run_dir,
        checkpoint=ckpt,
        metrics=read_metrics(run_dir),
        config=read_config(run_dir),
    )


def load(path_or_run: str | Path, weights: str | Path | None = None) -> nn.Module:
    """A spec (.wire) or a run directory as a model; `weights` loads a run's checkpoint into a spec.

    A network larger than the memory available is refused (RunError) before it is allocated."""
    path = Path(path_or_run)
    if path.is_dir():
        return load_run_model(path)
    net = build(path)
    check_memory(net)
    model = compile_network(net)
    if weights is not None:
        load_weights_into(model, Path(weights))
    return model


def load_spec(path: str | Path) -> core.Network:
    return build(Path(path))
