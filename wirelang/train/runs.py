"""The run directory, and the resolved settings a run is made from.

    runs/<spec>-<YYYYmmdd-HHMMSS>/
      spec.wire       the spec with its includes inlined: the run is rebuilt from this alone
      config.json     the resolved train settings, the command-line overrides, device, world
                      size, wirelang and language versions
      metrics.jsonl   one JSON object per epoch (see wirelang.train.metrics)
      checkpoints/    last.pt, prev.pt, best.pt, and phase1_last.pt for two-phase wirings

A fresh run and a resumed one go through the same door: `prepare_run` writes spec.wire and
config.json, and the training loop then continues from whatever checkpoint the directory holds
(none for a fresh run). This module is torch-free so that `--dry-run` and errors stay fast.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wirelang.diagnostics import Reporter
from wirelang.ir import core
from wirelang.train_config import SettingError, TrainConfig, apply_override, validate
from wirelang.version import LANGUAGE_VERSION, __version__

# Set by our launcher in the processes it starts: the run directory is already prepared. Here,
# not in `distributed`, so that the CLI can read it without importing torch.
LAUNCHED_ENV = "WIRELANG_LAUNCHED"


class RunError(Exception):
    """A problem reported in one line: exit 1 (runtime) or 2 (usage: a bad setting or flag).

    `quiet`: the other ranks of a job that rank 0 reports for; they exit without a message.
    """

    def __init__(self, message: str, exit_code: int = 1, quiet: bool = False):
        super().__init__(message)
        self.exit_code, self.quiet = exit_code, quiet


@dataclass
class RunPlan:
    """Everything a training process needs to know before it touches data or torch."""

    spec_path: Path
    net: core.Network  # as written; its train block is NOT the resolved one (see `config`)
    config: TrainConfig  # the spec's train block with the overrides applied, validated
    overrides: dict[str, Any] = field(default_factory=dict)  # key -> value, as given
    run_dir: Path = Path("runs")
    device: str = "cpu"  # "cpu" | "cuda"
    world_size: int = 1
    download: bool = False

    @property
    def spec_hash(self) -> str:
        from wirelang.backend.api import spec_hash

        return spec_hash(self.net)

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.net.name,
            "spec": "spec.wire",
            "spec_source": str(self.spec_path),
            "spec_hash": self.spec_hash,
            "train": self.config.model_dump(mode="json"),
            "overrides": self.overrides,
            "device": self.device,
            "world_size": self.world_size,
            "download": self.download,
            "wirelang_version": __version__,
            "language_version": LANGUAGE_VERSION,
        }


# ---------------------------------------------------------------------------- settings
def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs as plain values; values are read as the spec language reads them.

    Raises SpecError for a value that does not parse, RunError for a pair without `=`.
    """
    from wirelang.passes.evaluate import EvalError, Scope, evaluate, to_plain
    from wirelang.syntax.parse import parse_value

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise RunError(f"--set {pair}: expected key=value, e.g. --set optimizer.lr=0.05", 2)
        rep = Reporter()
        try:
            value = to_plain(evaluate(parse_value(text.strip(), f"--set {key.strip()}"), Scope({}), rep))
        except EvalError:  # already reported in `rep` (`--set optimizer.lr=1/0`)
            rep.raise_if_any()
            raise
        rep.raise_if_any()
        out[key.strip()] = value
    return out


def resolve_config(net: core.Network, overrides: dict[str, Any]) -> TrainConfig:
    """The spec's train block with `overrides` applied; a bad key or value is a RunError (2)."""
    from wirelang.passes.settings import check_train

    settings = dict(net.train)
    for key, value in overrides.items():
        settings = apply_override(settings, key, value)
    try:
        config = validate(settings)
    except SettingError as err:
        hint = f" ({err.hint})" if err.hint else ""
        raise RunError(f"--set {err.key}: {err.message}{hint}", 2) from None
    # The dataset must still fit the network (e.g. `--set data=cifar10` on an MNIST spec).
    rep = Reporter()
    check_train(net.model_copy(update={"train": config.model_dump(mode="json")}), rep)
    if rep.diagnostics:
        first = rep.diagnostics[0]
        hint = f" ({first.hint})" if first.hint else ""
        raise RunError(f"settings: {first.message}{hint}", 2)
    return config


def check_batch(config: TrainConfig, world_size: int) -> int:
    """The per-process batch: the global batch split evenly, or a RunError (2)."""
    if config.batch % world_size:
        raise RunError(f"batch {config.batch} does not split evenly over {world_size} processes "
                       f"(use a multiple of {world_size})", 2)
    return config.batch // world_size


# ---------------------------------------------------------------------------- directory
def default_run_dir(spec_path: Path) -> Path:
    return Path("runs") / f"{spec_path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_fresh_dir(run_dir: Path) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise RunError(f"{run_dir} already exists and is not empty "
                       f"(resume it with --resume {run_dir}, or choose another --out)", 2)


def prepare_run(plan: RunPlan) -> None:
    """Create the run directory with spec.wire and config.json (a fresh run)."""
    check_fresh_dir(plan.run_dir)
    try:
        (plan.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        write_text_atomic(plan.run_dir / "spec.wire", self_contained_spec(plan.spec_path))
        write_text_atomic(plan.run_dir / "config.json", json.dumps(plan.to_json(), indent=2) + "\n")
    except OSError as err:
        raise RunError(f"cannot create the run directory {plan.run_dir}: {err.strerror or err}") from None


def load_plan(spec_path: Path, run_dir: Path, net: core.Network) -> RunPlan:
    """The plan saved in `run_dir` (for --resume); refuses a spec whose meaning changed."""
    from wirelang.backend.api import spec_hash

    saved = read_config(run_dir)
    if spec_hash(net) != saved["spec_hash"]:
        raise RunError(f"{spec_path} is not the spec {run_dir} was trained from (its spec_hash "
                       f"{spec_hash(net)} differs from the run's {saved['spec_hash']}); "
                       f"start a new run instead", 2)
    return RunPlan(spec_path=spec_path, net=net, config=TrainConfig.model_validate(saved["train"]),
                   overrides=saved.get("overrides", {}), run_dir=run_dir, device=saved["device"],
                   world_size=int(saved["world_size"]), download=bool(saved.get("download", False)))


def read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a wirelang run directory (no config.json)") from None
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read {path}: {err}") from None


def self_contained_spec(path: Path) -> str:
    """The spec with every included file's lets and templates inlined before its own items.

    Comments are dropped: their line numbers refer to several files and would land in the
    wrong places. The result builds to the same IR (the same spec_hash) as the original.
    """
    from wirelang.fmt import format_file
    from wirelang.passes.load import load
    from wirelang.syntax import ast

    program = load(path)
    items = [item for f in program.files for item in f.items if not isinstance(item, ast.IncludeDecl)]
    merged = ast.File(path=program.root.path, items=items, span=program.root.span, comments=[])
    header = f"# Self-contained copy of {program.root.path} (includes inlined), written by wirelang {__version__}.\n"
    return header + format_file(merged)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
