"""Checkpoints: written atomically with a checksum, read back with a fallback to the previous one.

A checkpoint is an ordinary `torch.save`d dict (`torch.load(p)["model"]` is a state_dict) whose
`checksum` field is a SHA-256 over every other field, tensors included, so a truncated or
corrupted file is recognised. It holds only tensors and plain Python values, so it loads with
`weights_only=True`: reading a checkpoint never runs code.

Writing goes to a temporary file in the same folder, is fsynced, then renamed over the target;
`last.pt` is first renamed to `prev.pt`. A crash or a full disk at any moment therefore leaves
at least one complete, verified checkpoint behind.

After every checkpoint the trainer writes (`write`), `checkpoints/manifest.json` is rewritten
the same way: for `last`, `prev`, `best` and `phase1_last`, the file, phase, epoch, step, the
best epoch it knows, spec hash and checksum. Readers ask it which file is last (`resume_point`)
and best (`best_checkpoint`), verify the file they use against it, and fall back in a fixed
order, saying so, when a file changed after the manifest (a run killed between the two). A run
without a manifest (older runs) is read from its files as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import stat
from dataclasses import dataclass, replace
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
    MANIFEST,
    METRICS,
    PHASE1_LAST,
    PREV,
    ROLES,
    RunError,
    first_line,
    read_metrics,
    write_text_atomic,
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
def save(path: Path, payload: dict[str, Any], keep_previous: bool = False) -> str:
    """Write `payload` (+ its checksum) to `path` atomically; `keep_previous` moves the old file
    to prev.pt first. A failure leaves the previous file untouched and raises RunError. Returns
    the checksum."""
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
    return data["checksum"]


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
    return _read_verified(path)[0]


def _read_verified(path: Path) -> tuple[dict[str, Any], str]:
    """(payload, checksum) of one checkpoint file, verified; or CorruptCheckpoint."""
    if path.exists() and not path.is_file():  # a FIFO would block the reader, a folder fails
        raise CorruptCheckpoint(f"{path} is not a regular file")
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
    if not isinstance(data.get("model", {}), dict):
        raise CorruptCheckpoint(f"{path} is not a wirelang checkpoint")
    bad = non_finite(data.get("model", {}))
    if bad:
        raise CorruptCheckpoint(f"{path} holds non-finite weights ({bad})")
    return data, checksum


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


# ---------------------------------------------------------------------------- manifest
MANIFEST_FORMAT = 1
MAX_MANIFEST_BYTES = 65_536  # a real one is about 2 KB: anything larger is not read
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Entry:
    """What the manifest records of one checkpoint file. `best`: the (phase, epoch) this
    checkpoint names as the best so far; `stat`: (size, mtime_ns, inode) when it was recorded,
    so that a writer knows an unchanged file without reading it again."""

    file: str
    phase: int
    epoch: int
    step: int
    within: bool  # written inside epoch `epoch + 1`
    best: tuple[int, int] | None
    spec_hash: str | None
    checksum: str
    stat: tuple[int, int, int] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "phase": self.phase,
            "epoch": self.epoch,
            "step": self.step,
            "within": self.within,
            "best": None if self.best is None else {"phase": self.best[0], "epoch": self.best[1]},
            "spec_hash": self.spec_hash,
            "checksum": self.checksum,
            "stat": None if self.stat is None else list(self.stat),
        }


@dataclass(frozen=True)
class Manifest:
    path: Path
    spec_hash: str | None
    entries: dict[str, Entry]  # by role: last, prev, best, phase1_last


def _entry(file: str, payload: dict[str, Any], checksum: str, path: Path) -> Entry:
    best = payload.get("best")
    return Entry(
        file=file,
        phase=int(payload.get("phase", 1)),
        epoch=int(payload.get("epoch", 0)),
        step=int(payload.get("step", 0)),
        within="within" in payload,
        best=(int(best["phase"]), int(best["epoch"])) if isinstance(best, dict) else None,
        spec_hash=payload.get("spec_hash"),
        checksum=checksum,
        stat=_stat(path),
    )


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _manifest_digest(body: dict[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _write_manifest(folder: Path, entries: dict[str, Entry], spec_hash: str | None) -> None:
    body = {
        "format": MANIFEST_FORMAT,
        "spec_hash": spec_hash,
        "checkpoints": {role: entries[role].as_json() for role in ROLES if role in entries},
    }
    path = folder / MANIFEST
    try:
        write_text_atomic(path, json.dumps({**body, "checksum": _manifest_digest(body)}, indent=1))
    except OSError as err:
        raise RunError(f"cannot write {path}: {err.strerror or err}") from None
    _fsync_dir(folder)


def _parse_manifest(path: Path) -> Manifest | str | None:
    """The manifest at `path`; None when there is none; why it cannot be used otherwise. Read
    as hostile input: a bounded size, a regular file only, every field's type checked."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot read it: {err.strerror or err}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size > MAX_MANIFEST_BYTES:
        return f"larger than {MAX_MANIFEST_BYTES:,} bytes"
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        return f"cannot read it: {err.strerror or err}"
    if len(raw) > MAX_MANIFEST_BYTES:
        return f"larger than {MAX_MANIFEST_BYTES:,} bytes"
    if not raw.strip():
        return "empty"
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "not UTF-8 text"
    except json.JSONDecodeError as err:
        return f"not JSON: {err.msg} at line {err.lineno} column {err.colno}"
    except RecursionError:
        return "not JSON: nested too deeply"
    if not isinstance(data, dict):
        return f"a JSON {_json_kind(data)}, not an object"
    body = {k: v for k, v in data.items() if k != "checksum"}
    if data.get("checksum") != _manifest_digest(body):
        return "its checksum does not match its contents (corrupt or edited)"
    try:
        return _validate_manifest(path, body)
    except ValueError as err:
        return str(err)


def _json_kind(value: Any) -> str:
    kinds = {list: "list", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _validate_manifest(path: Path, body: dict[str, Any]) -> Manifest:
    if body.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"format {_short(body.get('format'))} is not {MANIFEST_FORMAT}")
    spec_hash = _hash_field(body.get("spec_hash"), "spec_hash", optional=True)
    checkpoints = body.get("checkpoints")
    if not isinstance(checkpoints, dict):
        raise ValueError("`checkpoints` is not an object")
    entries = {}
    for role, raw in checkpoints.items():
        if role not in ROLES:
            raise ValueError(f"unknown checkpoint {_short(role)}")
        entries[role] = _validate_entry(role, raw)
    return Manifest(path, spec_hash, entries)


def _validate_entry(role: str, raw: Any) -> Entry:
    at = f"checkpoints.{role}"
    if not isinstance(raw, dict):
        raise ValueError(f"`{at}` is not an object")
    if raw.get("file") != ROLES[role]:
        raise ValueError(f"`{at}.file` is not {ROLES[role]}")
    if not isinstance(raw.get("within"), bool):
        raise ValueError(f"`{at}.within` is not true or false")
    best = raw.get("best")
    if best is not None and not isinstance(best, dict):
        raise ValueError(f"`{at}.best` is not an object")
    got_stat = raw.get("stat")
    if got_stat is not None and not (isinstance(got_stat, list) and len(got_stat) == 3):
        raise ValueError(f"`{at}.stat` is not a list of three numbers")
    return Entry(
        file=ROLES[role],
        phase=_whole(raw.get("phase"), f"{at}.phase", 1, 9),
        epoch=_whole(raw.get("epoch"), f"{at}.epoch", 0, 10**9),
        step=_whole(raw.get("step"), f"{at}.step", 0, 10**15),
        within=raw["within"],
        best=None
        if best is None
        else (
            _whole(best.get("phase"), f"{at}.best.phase", 1, 9),
            _whole(best.get("epoch"), f"{at}.best.epoch", 0, 10**9),
        ),
        spec_hash=_hash_field(raw.get("spec_hash"), f"{at}.spec_hash", optional=True),
        checksum=_hash_field(raw.get("checksum"), f"{at}.checksum", length=64),
        stat=None
        if got_stat is None
        else tuple(_whole(v, f"{at}.stat", 0, 2**63) for v in got_stat),  # type: ignore[arg-type]
    )


def _whole(value: Any, at: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"`{at}` is not a whole number from {low} to {high:,}")
    return value


def _hash_field(value: Any, at: str, optional: bool = False, length: int | None = None) -> Any:
    if value is None and optional:
        return None
    ok = isinstance(value, str) and 0 < len(value) <= 64 and set(value) <= _HEX
    if not ok or (length is not None and len(value) != length):
        raise ValueError(f"`{at}` is not a hexadecimal hash")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_manifest(
    folder: Path, say=print, spec_hash: str | None = None, quiet: bool = False
) -> Manifest | None:
    """The run's manifest; None when it has none (a run from before manifests, or one stopped
    before its first checkpoint), or when it cannot be used: then it says why in one line and
    the caller chooses from the files as before. With `spec_hash`, a manifest of another
    network is refused (RunError)."""
    got = _parse_manifest(folder / MANIFEST)
    if isinstance(got, str):
        if not quiet:
            say(
                f"warning: {folder / MANIFEST} cannot be used ({got}); choosing checkpoints "
                "from the files alone"
            )
        return None
    if got is not None and spec_hash is not None:
        for theirs in (got.spec_hash, *(e.spec_hash for e in got.entries.values())):
            if theirs not in (None, spec_hash):
                raise RunError(
                    f"{got.path} belongs to another network (spec hash {theirs}, the run's is "
                    f"{spec_hash}); delete it to choose checkpoints from the files alone"
                )
    return got


def write(folder: Path, name: str, payload: dict[str, Any]) -> None:
    """Save checkpoint `name` (LAST moves the old last.pt to prev.pt first) and record it in the
    manifest. Each write rewrites the whole manifest from what the folder holds, so a file left
    unrecorded by a run killed before its manifest was written is recorded by the next one."""
    known = _known(folder)
    rotate = name == LAST and (folder / LAST).exists()
    previous = _describe(folder / LAST, known, payload.get("spec_hash")) if rotate else None
    checksum = save(folder / name, payload, keep_previous=name == LAST)
    fixed: dict[str, Entry | None] = {_role(name): _entry(name, payload, checksum, folder / name)}
    if rotate:
        fixed["prev"] = None if previous is None else replace(previous, file=PREV)
    _record(folder, fixed, known, payload.get("spec_hash"))


def _role(name: str) -> str:
    return next(role for role, file in ROLES.items() if file == name)


def _known(folder: Path) -> list[Entry]:
    got = _parse_manifest(folder / MANIFEST)
    return list(got.entries.values()) if isinstance(got, Manifest) else []


def _describe(path: Path, known: list[Entry], spec_hash: str | None) -> Entry | None:
    """The entry of the checkpoint at `path`: a recorded one whose file has not changed since
    (same size, time and inode; a rename keeps them), else from reading it; None for a file
    that is missing, unreadable or of another network."""
    now = _stat(path)
    if now is None:
        return None
    for entry in known:
        if entry.stat == now:
            return replace(entry, file=path.name)
    try:
        payload, checksum = _read_verified(path)
    except (OSError, CorruptCheckpoint):
        return None
    if payload.get("spec_hash") not in (None, spec_hash):
        return None
    return _entry(path.name, payload, checksum, path)


def _record(
    folder: Path, fixed: dict[str, Entry | None], known: list[Entry], spec_hash: str | None
) -> None:
    """Write the manifest: the `fixed` roles as given (None: no such file), every other role
    described from its file."""
    entries = {}
    for role, file in ROLES.items():
        entry = fixed[role] if role in fixed else _describe(folder / file, known, spec_hash)
        if entry is not None:
            entries[role] = entry
    _write_manifest(folder, entries, spec_hash)


def _refresh(folder: Path, roles: tuple[str, ...], spec_hash: str | None) -> None:
    """Record `roles` as their files now are (written after the manifest, by a run stopped
    before recording them, or by `restore_best`), leaving every other entry as it is: rank 0
    calls this while the other processes of a resumed job may still be reading the manifest
    to choose between last.pt and prev.pt, and their choice must not change under them."""
    got = _parse_manifest(folder / MANIFEST)
    if not isinstance(got, Manifest):
        return  # the next checkpoint written makes a manifest
    known = list(got.entries.values())
    now = {role: _describe(folder / ROLES[role], known, spec_hash) for role in roles}
    if all(now[role] == got.entries.get(role) for role in roles):
        return
    kept = {role: got.entries.get(role) for role in ROLES if role not in roles}
    _record(folder, {**kept, **now}, known, spec_hash)


def _where(phase: int, epoch: int, within: bool = False) -> str:
    at = f"epoch {epoch}" if phase == 1 else f"phase {phase}, epoch {epoch}"
    return at + (" and part of the next" if within else "")


def _where_payload(payload: dict[str, Any]) -> str:
    return _where(*_epoch_of(payload), within="within" in payload)


class _Files:
    """The checkpoint files of one folder, each read and verified at most once. A checkpoint of
    another network than `spec_hash` is refused (RunError) as soon as it is read."""

    def __init__(self, folder: Path, spec_hash: str | None):
        self.folder, self.spec_hash = folder, spec_hash
        self.cache: dict[str, tuple[dict[str, Any], str] | str] = {}

    def get(self, name: str) -> tuple[dict[str, Any], str] | str:
        """(payload, checksum) of a verified file, else why it cannot be used."""
        if name not in self.cache:
            path = self.folder / name
            try:
                payload, checksum = _read_verified(path)
            except FileNotFoundError:
                self.cache[name] = f"{path} is missing"
            except CorruptCheckpoint as err:
                self.cache[name] = str(err)
            else:
                _check_network(path, payload, self.spec_hash)
                self.cache[name] = (payload, checksum)
        return self.cache[name]


def _check_network(path: Path, payload: dict[str, Any], spec_hash: str | None) -> None:
    if spec_hash is not None and payload.get("spec_hash") not in (None, spec_hash):
        raise RunError(
            f"{path} is a checkpoint of another network (spec hash {payload['spec_hash']}, "
            f"the run's is {spec_hash})"
        )


def _last_from_manifest(m: Manifest, files: _Files, say) -> tuple[dict[str, Any], Path] | None:
    """The checkpoint a run continues from, as the manifest records it: last.pt when it is the
    file recorded as last; else (it is missing, corrupt, or changed after the manifest: a run
    killed between the two) the first of last.pt, prev.pt that is a checkpoint the manifest
    records as last or prev, saying so. None when neither file exists."""
    folder = files.folder
    chain = {m.entries[r].checksum: r for r in ("prev", "last") if r in m.entries}
    why, reasons = None, []
    for name in (LAST, PREV):
        got = files.get(name)
        if isinstance(got, tuple) and got[1] in chain:
            if name == LAST and chain[got[1]] == "last":
                return got[0], folder / LAST
            if why is None:  # last.pt holds what the manifest records as prev
                why = f"{folder / LAST} is not the checkpoint {MANIFEST} records as last"
            say(f"warning: {why}; using {name} instead ({_where_payload(got[0])})")
            return got[0], folder / name
        reason = (
            got
            if isinstance(got, str)
            else f"{folder / name} is not a checkpoint {MANIFEST} records (it changed after "
            "the manifest was written)"
        )
        why = why or reason
        reasons.append(reason)
    if not any((folder / n).exists() for n in (LAST, PREV)):
        return None
    raise RunError(
        f"no checkpoint in {folder} to continue from: {'; '.join(reasons)}; start a new run, "
        f"or delete {MANIFEST} to continue from the files as they are"
    )


def _best_from_manifest(m: Manifest, files: _Files, say) -> tuple[dict[str, Any], Path]:
    """The checkpoint of the run's best epoch. The best epoch is the one the newest checkpoint
    names (recorded in the manifest, or a verified file written after it); the newest verified
    file holding it at its end is used. When that is not the file the manifest records as best
    (best.pt stale, missing or corrupt), it says so; with no such file it refuses."""
    folder = files.folder
    recorded = {e.checksum for e in m.entries.values()}
    last = m.entries.get("last")
    newest_recorded = last.step if last is not None else -1

    def trusted(got) -> bool:  # recorded, or written after everything the manifest records
        return isinstance(got, tuple) and (
            got[1] in recorded or int(got[0].get("step", -1)) > newest_recorded
        )

    # (step, best epoch) of the newest checkpoint known: the manifest's last, or a newer file
    news = [(last.step, last.best, last.phase, last.epoch)] if last is not None else []
    for name in (LAST, PREV):
        got = files.get(name)
        if trusted(got):
            payload = got[0]
            best = payload.get("best")
            news.append(
                (
                    int(payload.get("step", -1)),
                    (int(best["phase"]), int(best["epoch"])) if isinstance(best, dict) else None,
                    *_epoch_of(payload),
                )
            )
    recorded_best = m.entries.get("best")
    if not news and recorded_best is None:
        raise RunError(f"{folder} has no good checkpoint ({files.get(LAST)})")
    wanted = max(news, key=lambda n: n[0])[1] if news else None
    if wanted is None and not news:
        wanted = (recorded_best.phase, recorded_best.epoch)
    if wanted is None:  # no epoch finished yet: the newest checkpoint
        for name in (LAST, PREV):
            got = files.get(name)
            if trusted(got):
                return got[0], folder / name
        raise RunError(f"{folder} has no good checkpoint ({files.get(LAST)})")
    for name in (LAST, BEST, PREV, PHASE1_LAST):
        got = files.get(name)
        if trusted(got) and "within" not in got[0] and _epoch_of(got[0]) == wanted:
            if recorded_best is None or got[1] != recorded_best.checksum:
                say(
                    f"warning: {_why_not_best(m, files, wanted)}; using {name} "
                    f"({_where(*wanted)}), the newest checkpoint of the best epoch"
                )
            return got[0], folder / name
    raise RunError(
        f"no readable checkpoint in {folder} holds the best epoch ({_where(*wanted)}): "
        f"{_why_not_best(m, files, wanted)}; choose a checkpoint file with --checkpoint"
    )


def _why_not_best(m: Manifest, files: _Files, wanted: tuple[int, int]) -> str:
    recorded = m.entries.get("best")
    if recorded is None:
        return f"{MANIFEST} records no best checkpoint"
    if (recorded.phase, recorded.epoch) != wanted:
        return (
            f"{MANIFEST} records {BEST} at {_where(recorded.phase, recorded.epoch)} but the best "
            f"is {_where(*wanted)} (a run stopped before writing it)"
        )
    got = files.get(BEST)
    if isinstance(got, str):
        return got
    if got[1] != recorded.checksum:
        return (
            f"{files.folder / BEST} is not the checkpoint {MANIFEST} records as best (it "
            "changed after the manifest was written)"
        )
    return f"{files.folder / BEST} holds {_where_payload(got[0])}"


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
    manifest = read_manifest(folder, say, spec_hash)
    if manifest is not None:
        found = _last_from_manifest(manifest, _Files(folder, spec_hash), say)
    else:  # a run from before manifests: the files alone
        if not (folder / LAST).exists() and (folder / PREV).exists():  # between two renames
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
    if found is not None:
        _check_network(found[1], found[0], spec_hash)
    return found


def restore_best(run_dir: Path, found: tuple[dict[str, Any], Path], say=print) -> None:
    """Before a run continues from `found`: when that checkpoint ends the best epoch so far
    but best.pt does not hold it (the run stopped after last.pt landed, before best.pt did),
    best.pt is written from it now; the later epochs may never beat it. A best.pt that landed
    after the manifest was last written is recorded in it."""
    payload, path = found
    folder = Path(run_dir) / CHECKPOINTS
    wanted = payload.get("best")
    if (
        "within" not in payload
        and wanted
        and (int(wanted["phase"]), int(wanted["epoch"])) == _epoch_of(payload)
        and not _holds(folder / BEST, payload)
    ):
        say(
            f"warning: {folder / BEST} does not hold the best epoch, {wanted['epoch']} (a run "
            f"stopped while writing it); writing it from {path.name}"
        )
        save(folder / BEST, payload)
    # recorded with last and prev left as they are (not `write`): see `_refresh`
    _refresh(folder, ("best",), payload.get("spec_hash"))


def restore_phase1_last(run_dir: Path, found: tuple[dict[str, Any], Path], say=print) -> None:
    """Before a two-phase run continues from `found`, the end of its phase one: phase1_last.pt
    is written from it when it does not hold it (the run stopped after last.pt landed, before
    phase1_last.pt did), and recorded in the manifest when it landed after it."""
    payload, path = found
    folder = Path(run_dir) / CHECKPOINTS
    if not _holds(folder / PHASE1_LAST, payload):
        say(
            f"warning: {folder / PHASE1_LAST} does not hold the end of phase 1 (a run stopped "
            f"while writing it); writing it from {path.name}"
        )
        save(folder / PHASE1_LAST, payload)
    _refresh(folder, ("phase1_last",), payload.get("spec_hash"))


def _holds(path: Path, payload: dict[str, Any]) -> bool:
    """The checkpoint at `path` is good and of the same epoch as `payload`."""
    try:
        return _epoch_of(read(path)) == _epoch_of(payload)
    except (FileNotFoundError, CorruptCheckpoint):
        return False


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
        known, spec_hash = _known(folder), newest.get("spec_hash")
        kept = _describe(prev, known, spec_hash)
        os.replace(last, folder / DIVERGED)
        if prev.exists():
            os.replace(prev, last)
        _fsync_dir(folder)
        moved = f"{LAST} held the weights that gave it and is now {folder / DIVERGED}; "
        fixed = {"last": None if kept is None else replace(kept, file=LAST), "prev": None}
        try:
            _record(folder, fixed, known, spec_hash)
        except RunError as err:  # the files are right; readers fall back without the manifest
            moved += f"({err}) "
    else:
        moved = ""
    if not last.exists():
        return moved + "no good checkpoint had been written"
    return moved + f"the last good checkpoint is {last}"


def _epoch_of(payload: dict[str, Any]) -> tuple[int, int]:
    return (int(payload.get("phase", 1)), int(payload.get("epoch", 0)))


def best_checkpoint(
    run_dir: str | Path, say=print, spec_hash: str | None = None
) -> tuple[dict[str, Any], Path]:
    """The checkpoint a finished run is used from: its best epoch, as the manifest and the
    newest checkpoint record it (`_best_from_manifest`). With `spec_hash`, a manifest or a
    checkpoint of another network is refused. A run without a manifest: `_best_from_files`."""
    folder = Path(run_dir) / CHECKPOINTS
    manifest = read_manifest(folder, say, spec_hash)
    if manifest is not None:
        return _best_from_manifest(manifest, _Files(folder, spec_hash), say)
    return _best_from_files(run_dir, say)


def _best_from_files(run_dir: str | Path, say=print) -> tuple[dict[str, Any], Path]:
    """A run without a manifest: its best epoch, as the newest good last.pt (or prev.pt)
    records it. best.pt is used only when it holds that epoch: a run stopped between writing
    last.pt and best.pt leaves an older best.pt behind, and the newest checkpoint then is the
    best one itself. A folder without last/prev uses best.pt alone."""
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


def load_weights_into(
    model: nn.Module, path: str | Path, say=print, spec_hash: str | None = None
) -> tuple[dict[str, Any], Path]:
    """Load a checkpoint's weights (and masks) into `model`; `path` is a run dir (its best
    checkpoint) or a .pt file. With `spec_hash`, a checkpoint of another network is refused.
    Returns the payload and the file it came from."""
    path = Path(path)
    if path.is_dir():
        payload, path = best_checkpoint(path, say, spec_hash)
    else:
        try:
            payload = read(path)
        except FileNotFoundError:
            raise RunError(f"no such checkpoint: {path}") from None
        except CorruptCheckpoint as err:
            raise RunError(str(err)) from None
    _check_network(path, payload, spec_hash)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError) as err:
        raise RunError(
            f"{path}: the checkpoint does not fit this network ({first_line(err)})"
        ) from None
    return payload, path


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
        # one state per device the run had; a resume may have fewer (or more) devices
        for device, rng in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(rng, device)
