"""Read what the after-training commands work on: a run directory (or a spec) as a model.

A run directory holds `spec.wire` (self-contained), `metrics.jsonl` and `checkpoints/best.pt`
/ `last.pt` (a dict whose `model` entry is the WiredModel's state_dict). The checkpoint is the
one `wirelang.load(RUN)` uses: best, else last, unless `checkpoint` names another. When the
trainer's own reader (`wirelang.train.checkpoint`) is present it is used, so both always agree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from wirelang.ir import core


class RunError(Exception):
    """A run directory or checkpoint that cannot be read (reported in one line, exit 1)."""


@dataclass
class Run:
    net: core.Network
    model: object  # wirelang.backend.api.WiredModel, in eval mode
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
        ckpt = f"/{self.checkpoint.relative_to(self.dir)}" if self.checkpoint and self.checkpoint.is_relative_to(self.dir) else ""
        return f"{self.dir.name}{ckpt}"


def _shared():
    try:
        from wirelang.train import checkpoint
    except ImportError:  # the trainer is not installed here yet: use the reader below
        return None
    return checkpoint if hasattr(checkpoint, "load_run_model") and hasattr(checkpoint, "find_checkpoint") else None


def _run_errors() -> tuple[type[Exception], ...]:
    try:
        from wirelang.train.runs import RunError as TrainRunError
    except ImportError:
        return (RunError,)
    return (RunError, TrainRunError)


def find_checkpoint(run_dir: Path) -> Path:
    shared = _shared()
    if shared is not None:
        try:
            return Path(shared.find_checkpoint(run_dir))
        except _run_errors() as err:
            raise RunError(str(err)) from None
    for name in ("best.pt", "last.pt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise RunError(f"{run_dir} holds no checkpoints/best.pt or checkpoints/last.pt")


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
    return rows


def load_run(run_dir: str | Path, checkpoint: str | Path | None = None) -> Run:
    """The run's network and trained model (eval mode), from `checkpoint` or the default one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run directory")
    spec = run_dir / "spec.wire"
    if not spec.is_file():
        raise RunError(f"{run_dir} has no spec.wire; is it a run directory written by `wirelang train`?")
    ckpt = Path(checkpoint) if checkpoint is not None else find_checkpoint(run_dir)
    if not ckpt.is_file():
        raise RunError(f"no checkpoint at {ckpt}")
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    shared = _shared()
    try:
        if shared is not None and config:
            # unnamed: let the trainer choose, exactly as `wirelang.load(RUN)` does (it also
            # skips a corrupt best.pt)
            model = shared.load_run_model(run_dir, checkpoint=Path(checkpoint) if checkpoint is not None else None)
        else:  # no trainer here, or a run assembled by hand without config.json
            model = _load_model(spec, ckpt)
    except _run_errors() as err:
        raise RunError(str(err)) from None
    model.eval()
    return Run(net=model.net, model=model, dir=run_dir, checkpoint=ckpt, metrics=read_metrics(run_dir), config=config)


def _load_model(spec: Path, ckpt: Path):
    import torch

    from wirelang.backend.api import compile_network
    from wirelang.frontend import build

    model = compile_network(build(spec))
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which, not a traceback
        raise RunError(f"cannot read checkpoint {ckpt}: {err}") from err
    state = state["model"] if isinstance(state, dict) and "model" in state else state
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise RunError(f"checkpoint {ckpt} does not fit {spec}: {str(err).splitlines()[0]}") from err
    return model


def load_spec(path: str | Path) -> core.Network:
    from wirelang.frontend import build

    return build(Path(path))
