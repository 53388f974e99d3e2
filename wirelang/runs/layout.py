"""The run directory's layout and its plain files (config.json, metrics.jsonl). Torch-free.

Everything that names a file of a run, or reads or writes one that is not a checkpoint, is
here, so that the trainer, `eval`, `inspect`, `export` and the tests agree on one layout.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

SPEC, CONFIG, METRICS = "spec.wire", "config.json", "metrics.jsonl"
STEP_METRICS, TENSORBOARD = "metrics.csv", "tensorboard"  # per-step scalars (see train/metrics)
CHECKPOINTS = "checkpoints"
LAST, PREV, BEST, PHASE1_LAST = "last.pt", "prev.pt", "best.pt", "phase1_last.pt"
DIVERGED = "diverged.pt"  # a checkpoint whose weights gave a non-finite loss, set aside
# checkpoints/manifest.json: which file is last, prev, best (and phase1_last), with the epoch,
# step, spec hash and checksum of each (written and read by runs/checkpoint.py)
MANIFEST = "manifest.json"
ROLES = {"last": LAST, "prev": PREV, "best": BEST, "phase1_last": PHASE1_LAST}

# Set by our launcher in the processes it starts: the run directory is already prepared.
# Torch-free here, so that the CLI can read it without importing torch.
LAUNCHED_ENV = "WIRELANG_LAUNCHED"


class RunError(Exception):
    """A problem reported in one line: exit 1 (runtime) or 2 (usage: a bad setting or flag).

    `quiet`: the other ranks of a job that rank 0 reports for; they exit without a message.
    """

    def __init__(self, message: str, exit_code: int = 1, quiet: bool = False):
        super().__init__(message)
        self.exit_code, self.quiet = exit_code, quiet


def first_line(err: BaseException) -> str:
    """An exception in one line for a message (its type when it says nothing)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def default_threads() -> int:
    """A one-process CPU run's thread count when none is given: OMP_NUM_THREADS where the user
    set it to a positive count (as torch itself reads it), otherwise the usable cores."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return usable_cores()


def default_run_dir(spec_path: Path) -> Path:
    return Path("runs") / f"{spec_path.stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def never_started(run_dir: Path) -> bool:
    """A run folder that failed before its first checkpoint and its first logged epoch (a
    missing dataset, a bad flag): nothing in it is worth keeping, so it may be started again."""
    if not run_dir.is_dir():
        return False
    if not {p.name for p in run_dir.iterdir()} <= {
        SPEC,
        CONFIG,
        CHECKPOINTS,
        METRICS,
        STEP_METRICS,
        TENSORBOARD,
    }:
        return False
    folder = run_dir / CHECKPOINTS
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        return False
    return not read_metrics(run_dir)


def check_fresh_dir(run_dir: Path) -> None:
    """A new run may go to `run_dir`: it is absent, empty, or a start that failed."""
    if (
        run_dir.exists()
        and (not run_dir.is_dir() or any(run_dir.iterdir()))
        and not never_started(run_dir)
    ):
        raise RunError(
            f"{run_dir} already exists and is not empty "
            f"(resume it with --resume {run_dir}, or choose another --out)",
            2,
        )


def check_run_dir(run_dir: Path) -> None:
    """`run_dir` looks like a run written by `wirelang train` (a spec.wire in a folder)."""
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a run directory")
    if not (run_dir / SPEC).is_file():
        raise RunError(
            f"{run_dir} has no {SPEC}; is it a run directory written by `wirelang train`?"
        )


def read_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{run_dir} is not a wirelang run directory (no {CONFIG})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"cannot read {path}: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("train"), dict):
        raise RunError(f"{path} is not a wirelang run configuration")
    return data


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of metrics.jsonl, up to the first damaged line: a line cut short by a
    crash, and anything after it, is not trusted."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(row, dict):
            break
        rows.append(row)
    return rows


class MetricsLog:
    """metrics.jsonl, appended by rank 0; each line is flushed and fsynced as it is written."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / METRICS

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def truncate_after(self, phase: int, epoch: int) -> None:
        """Drop lines past the checkpoint a run resumes from (written before a crash), and a
        damaged last line, so that new lines are not appended behind it."""
        keep = [r for r in read_metrics(self.run_dir) if (r["phase"], r["epoch"]) <= (phase, epoch)]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        if self.path.exists() and self.path.read_text(encoding="utf-8", errors="replace") != text:
            write_text_atomic(self.path, text)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
