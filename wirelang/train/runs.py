"""The resolved settings a run is made from, and preparing its directory.

A fresh run and a resumed one go through the same door: `prepare_run` writes spec.wire and
config.json, and the training loop then continues from whatever checkpoint the directory holds
(none for a fresh run). The layout itself belongs to `wirelang.runs.layout`. This module is
torch-free so that `--dry-run` and errors stay fast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wirelang.diagnostics import Reporter
from wirelang.ir import core
from wirelang.ir.meaning import spec_hash
from wirelang.runs.layout import (
    CHECKPOINTS,
    CONFIG,
    SPEC,
    RunError,
    check_fresh_dir,
    read_config,
    write_text_atomic,
)
from wirelang.train_config import SettingError, TrainConfig, apply_override, validate
from wirelang.version import LANGUAGE_VERSION, __version__


@dataclass
class RunPlan:
    """Everything a training process needs to know before it touches data or torch."""

    spec_path: Path
    net: core.Network  # as written; its train block is NOT the resolved one (see `config`)
    config: TrainConfig  # the spec's train block with the overrides applied, validated
    overrides: dict[str, Any] = field(default_factory=dict)  # key -> value, as given
    run_dir: Path = Path("runs")
    device: str = "cpu"  # "cpu", "cuda" (device 0, or one per process) or "cuda:N"
    world_size: int = 1
    download: bool = False
    threads: int | None = (
        None  # torch threads of a single CPU process; None: not this process's to set
    )
    given: Any = None  # a train.data.GivenData: datasets passed from Python (not saved)

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.net)

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.net.name,
            "spec": SPEC,
            "spec_source": str(self.spec_path),
            "spec_hash": self.spec_hash,
            "train": self.config.model_dump(mode="json"),
            "overrides": self.overrides,
            "device": self.device,
            "world_size": self.world_size,
            "download": self.download,
            "threads": self.threads,
            **({"python_data": self.given.describe()} if self.given is not None else {}),
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
            value = to_plain(
                evaluate(parse_value(text.strip(), f"--set {key.strip()}"), Scope({}), rep)
            )
        except EvalError:  # already reported in `rep` (`--set optimizer.lr=1/0`)
            rep.raise_if_any()
            raise
        rep.raise_if_any()
        out[key.strip()] = value
    return out


def merged_config(net: core.Network, overrides: dict[str, Any]) -> TrainConfig:
    """The spec's train block with `overrides` applied and validated, not yet checked against
    the network; a bad key or value is a RunError (2)."""
    settings = dict(net.train)
    for key, value in overrides.items():
        settings = apply_override(settings, key, value)
    try:
        return validate(settings)
    except SettingError as err:
        hint = f" ({err.hint})" if err.hint else ""
        raise RunError(f"--set {err.key}: {err.message}{hint}", 2) from None


def resolve_config(net: core.Network, overrides: dict[str, Any]) -> TrainConfig:
    """The spec's train block with `overrides` applied; a bad key or value is a RunError (2)."""
    from wirelang.passes.settings import check_train

    config = merged_config(net, overrides)
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
        raise RunError(
            f"batch {config.batch} does not split evenly over {world_size} processes "
            f"(use a multiple of {world_size})",
            2,
        )
    return config.batch // world_size


# ---------------------------------------------------------------------------- directory
def prepare_run(plan: RunPlan) -> None:
    """Create the run directory with spec.wire and config.json (a fresh run)."""
    check_fresh_dir(plan.run_dir)
    try:
        (plan.run_dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            plan.run_dir / SPEC, self_contained_spec(plan.spec_path, classes=plan.net.classes)
        )
        save_plan(plan)
    except OSError as err:
        raise RunError(
            f"cannot create the run directory {plan.run_dir}: {err.strerror or err}"
        ) from None


def save_plan(plan: RunPlan) -> None:
    """Rewrite config.json (a resumed run told where its data is now)."""
    write_text_atomic(plan.run_dir / CONFIG, json.dumps(plan.to_json(), indent=2) + "\n")


def load_plan(spec_path: Path, run_dir: Path, net: core.Network) -> RunPlan:
    """The plan saved in `run_dir` (for --resume); refuses a spec whose meaning changed."""
    saved = read_config(run_dir)
    if spec_hash(net) != saved["spec_hash"]:
        raise RunError(
            f"{spec_path} is not the spec {run_dir} was trained from (its spec_hash "
            f"{spec_hash(net)} differs from the run's {saved['spec_hash']}); "
            f"start a new run instead",
            2,
        )
    return RunPlan(
        spec_path=spec_path,
        net=net,
        config=TrainConfig.model_validate(saved["train"]),
        overrides=saved.get("overrides", {}),
        run_dir=run_dir,
        device=saved["device"],
        world_size=int(saved["world_size"]),
        download=bool(saved.get("download", False)),
    )


def self_contained_spec(path: Path, classes: int | None = None) -> str:
    """The spec with every included file's lets and templates inlined before its own items.

    Comments are dropped: their line numbers refer to several files and would land in the
    wrong places. `classes auto` is written as the count `classes` it was resolved to (the
    class folders of the data when the run started), so that the run rebuilds the same network
    without its data. The result builds to the same IR (the same spec_hash) as the original
    built with that count.
    """
    from wirelang.fmt import format_file
    from wirelang.passes.load import load
    from wirelang.syntax import ast

    program = load(path)
    items = [
        _count_auto(item, classes) if isinstance(item, ast.NetworkDecl) else item
        for f in program.files
        for item in f.items
        if not isinstance(item, ast.IncludeDecl)
    ]
    merged = ast.File(path=program.root.path, items=items, span=program.root.span, comments=[])
    header = f"# Self-contained copy of {program.root.path} (includes inlined), written by wirelang {__version__}.\n"
    return header + format_file(merged)


def _count_auto(decl: Any, classes: int | None) -> Any:
    """The network declaration with `classes auto` replaced by `classes <classes>`."""
    from wirelang.syntax import ast

    if classes is None:
        return decl
    body = [
        item.model_copy(
            update={"value": ast.Num(span=item.value.span, value=classes, text=str(classes))}
        )
        if isinstance(item, ast.ClassesStmt)
        and isinstance(item.value, ast.Name)
        and item.value.name == "auto"
        else item
        for item in decl.body
    ]
    return decl.model_copy(update={"body": body})
