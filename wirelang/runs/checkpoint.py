"""Checkpoints: written atomically with a checksum, read back with a fallback to the previous one.

A checkpoint is an ordinary `torch.save`d dict (`torch.load(p)["model"]` is a state_dict) whose
`checksum` field is a SHA-256 over every other field, tensors included, so a truncated or
corrupted file is recognised. It holds only tensors and plain Python values, so it loads with
`weights_only=True`: reading a checkpoint never runs code.

Writing goes to a temporary file in the same folder, is fsynced, then renamed over the target;
`last.pt` is first renamed to `prev.pt`. A crash or a full disk at any moment therefore leaves
at least one complete, verified checkpoint behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wirelang.runs.layout import (
    BEST,
    CHECKPOINTS,
    DIVERGED,
    LAST,
    METRICS,
    PREV,
    RunError,
    first_line,
    read_metrics,
)


class CorruptCheckpoint(Exception):
    pass


# ---------------------------------------------------------------------------- checksum
def digest(obj: Any) -> str:
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def _feed(h: Any, obj: Any) -> None:
    if isinstance(obj, dict):
        h.update(b"{")
        for key in sorted(obj, key=repr):
            h.update(repr(key).encode())
            _feed(h, obj[key])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for item in obj:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    else:  # numbers, strings, None: their repr is exact (floats round-trip through repr)
        h.update(repr(obj).encode())


# ---------------------------------------------------------------------------- write
def save(path: Path, payload: dict[str, Any], keep_previous: bool = False) -> None:
    """Write `payload` (+ its checksum) to `path` atomically; `keep_previous` moves the old file
    to prev.pt first. A failure leaves the previous file untouched and raises RunError."""
    data = {**payload, "checksum": digest(payload)}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        if keep_previous and path.exists():
            os.replace(path, path.with_name(PREV))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except (OSError, RuntimeError) as err:  # torch's zip writer reports a full disk as RuntimeError
        with contextlib.suppress(OSError):
            tmp.unlink()
        reason = getattr(err, "strerror", None) or first_line(err)
        raise RunError(
            f"cannot write checkpoint {path}: {reason}; the previous checkpoint is kept"
        ) from None


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); not possible on every platform.
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------- read
def read(path: Path) -> dict[str, Any]:
    """The verified payload of one checkpoint file, or CorruptCheckpoint."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated zip, a foreign file: all mean "cannot be trusted"
        raise CorruptCheckpoint(f"{path} is unreadable ({first_line(err)})") from None
    if not isinstance(data, dict) or "checksum" not in data:
        raise CorruptCheckpoint(f"{path} is not a wirelang checkpoint")
    checksum = data.pop("checksum")
    if checksum != digest(data):
        raise CorruptCheckpoint(f"{path} fails its checksum (corrupt or truncated)")
    bad = non_finite(data.get("model", {}))
    if bad:
        raise CorruptCheckpoint(f"{path} holds non-finite weights ({bad})")
    return data


def non_finite(state: dict[str, Any]) -> str | None:
    """The first floating tensor of a state_dict with a NaN or an infinity, by name."""
    for name, t in state.items():
        if (
            isinstance(t, torch.Tensor)
            and t.is_floating_point()
            and not bool(torch.isfinite(t).all())
        ):
            return name
    return None


def read_first_good(paths: list[Path], say=print) -> tuple[dict[str, Any], Path] | None:
    """The first of `paths` that exists and verifies; each skipped bad file is reported."""
    for i, path in enumerate(paths):
        if not path.exists():
            continue
        try:
            return read(path), path
        except CorruptCheckpoint as err:
            rest = [p.name for p in paths[i + 1 :] if p.exists()]
            say(
                f"warning: {err}; "
                + (f"using {rest[0]} instead" if rest else "no other checkpoint")
            )
    return None


def resume_point(
    run_dir: Path, say=print, spec_hash: str | None = None
) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint a resumed run continues from: last.pt, else prev.pt; None for a new run.

    Refused (RunError): a folder whose checkpoints are all corrupt, a checkpoint of another
    network than `spec_hash`, and a run that logged finished epochs but has no checkpoint left
    (starting it again would silently repeat them). One logged epoch and no checkpoint is a run
    stopped while writing its first: the metrics line is written first, so it starts again
    (what a resume would do), and says so."""
    folder = Path(run_dir) / CHECKPOINTS
    if not (folder / LAST).exists() and (folder / PREV).exists():  # a crash between two renames
        say(f"warning: {folder / LAST} is missing; using {PREV}")
    found = read_first_good([folder / LAST, folder / PREV], say)
    if found is None and any((folder / n).exists() for n in (LAST, PREV)):
        raise RunError(f"every checkpoint in {folder} is corrupt; start a new run")
    logged = read_metrics(run_dir)
    if found is None and len(logged) == 1 and (logged[0]["phase"], logged[0]["epoch"]) == (1, 1):
        say(
            f"warning: {run_dir} logged its first epoch but stopped before its checkpoint "
            "landed; training it from the start again"
        )
    elif found is None and logged:
        raise RunError(
            f"{run_dir} logged {len(logged)} epoch(s) in {METRICS} but holds no "
            f"{LAST} or {PREV} to continue from; start a new run"
        )
    if (
        found is not None
        and spec_hash is not None
        and found[0].get("spec_hash") not in (None, spec_hash)
    ):
        raise RunError(
            f"{found[1]} is a checkpoint of another network (spec hash {found[0]['spec_hash']}, "
            f"the run's is {spec_hash}); start a new run"
        )
    return found


def restore_best(run_dir: Path, found: tuple[dict[str, Any], Path], say=print) -> None:
    """Before a run continues from `found`: when that checkpoint ends the best epoch so far
    but best.pt does not hold it (the run stopped after last.pt landed, before best.pt did),
    best.pt is written from it now; the later epochs may never beat it."""
    payload, path = found
    wanted = payload.get("best")
    if "within" in payload or not wanted:
        return
    if (int(wanted["phase"]), int(wanted["epoch"])) != _epoch_of(payload):
        return
    best_file = Path(run_dir) / CHECKPOINTS / BEST
    try:
        if _epoch_of(read(best_file)) == _epoch_of(payload):
            return
    except (FileNotFoundError, CorruptCheckpoint):
        pass
    say(
        f"warning: {best_file} does not hold the best epoch, {wanted['epoch']} (a run stopped "
        f"while writing it); writing it from {path.name}"
    )
    save(best_file, payload)


def set_aside_diverged(run_dir: Path, step: int) -> str:
    """After a non-finite loss at optimizer step `step` (counted from 1): last.pt, if it was
    written after step `step - 1`, holds the very weights that gave that loss, so it is not a
    good checkpoint. It is renamed to diverged.pt (kept to look at) and prev.pt, written
    before it, becomes last.pt. Returns what the run folder now keeps, for the message."""
    folder = Path(run_dir) / CHECKPOINTS
    last, prev = folder / LAST, folder / PREV
    try:
        newest = read(last)
    except (FileNotFoundError, CorruptCheckpoint):
        newest = None
    if newest is not None and int(newest.get("step", -1)) == step - 1:
        os.replace(last, folder / DIVERGED)
        if prev.exists():
            os.replace(prev, last)
        _fsync_dir(folder)
        moved = f"{LAST} held the weights that gave it and is now {folder / DIVERGED}; "
    else:
        moved = ""
    if not last.exists():
        return moved + "no good checkpoint had been written"
    return moved + f"the last good checkpoint is {last}"


def _epoch_of(payload: dict[str, Any]) -> tuple[int, int]:
    return (int(payload.get("phase", 1)), int(payload.get("epoch", 0)))


def best_checkpoint(run_dir: str | Path, say=print) -> tuple[dict[str, Any], Path]:
    """The checkpoint a finished run is used from: its best epoch, as the newest good last.pt
    (or prev.pt) records it. best.pt is used only when it holds that epoch: a run stopped
    between writing last.pt and best.pt leaves an older best.pt behind, and the newest
    checkpoint then is the best one itself. A folder without last/prev uses best.pt alone."""
    folder = Path(run_dir) / CHECKPOINTS
    last = read_first_good([folder / LAST, folder / PREV], say)
    best_file = folder / BEST
    if last is not None:
        payload, path = last
        wanted = payload.get("best")
        if not wanted or (int(wanted["phase"]), int(wanted["epoch"])) == _epoch_of(payload):
            return payload, path
        wanted_at = (int(wanted["phase"]), int(wanted["epoch"]))
        try:
            best = read(best_file)
        except (FileNotFoundError, CorruptCheckpoint) as err:
            say(f"warning: {best_file} cannot be used ({err}); using {path.name}")
            return payload, path
        if _epoch_of(best) != wanted_at:
            say(
                f"warning: {best_file} holds epoch {_epoch_of(best)[1]}, not the best epoch "
                f"{wanted_at[1]} (a run stopped while writing it); using {path.name}"
            )
            return payload, path
        return best, best_file
    found = read_first_good([best_file], say)
    if found is None:
        raise RunError(f"{run_dir} has no good checkpoint (looked in {folder})")
    return found


def find_checkpoint(run_dir: str | Path) -> Path:
    """The file `best_checkpoint` chooses (for messages and labels)."""
    return best_checkpoint(run_dir, say=lambda _: None)[1]


# ---------------------------------------------------------------------------- models
def load_weights_into(
    model: nn.Module, path: str | Path, say=print, spec_hash: str | None = None
) -> dict[str, Any]:
    """Load a checkpoint's weights (and masks) into `model`; `path` is a run dir (its best
    checkpoint) or a .pt file. With `spec_hash`, a checkpoint of another network is refused."""
    path = Path(path)
    if path.is_dir():
        payload, path = best_checkpoint(path, say)
    else:
        try:
            payload = read(path)
        except FileNotFoundError:
            raise RunError(f"no such checkpoint: {path}") from None
        except CorruptCheckpoint as err:
            raise RunError(str(err)) from None
    if spec_hash is not None and payload.get("spec_hash") not in (None, spec_hash):
        raise RunError(
            f"{path} is a checkpoint of another network (spec hash {payload['spec_hash']}, "
            f"this network's is {spec_hash})"
        )
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise RunError(
            f"{path}: the checkpoint does not fit this network ({first_line(err)})"
        ) from None
    return payload


# ---------------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """Every random generator training touches, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
