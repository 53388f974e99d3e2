"""Read a spec and everything it includes, in include order (depth first, each file once).

A spec file holds exactly one `network`; an included file (by convention in `specs/lib/`) holds
only `let`s, `template`s and further includes. Include cycles are errors at the include
statement that closes them.

A spec may come from someone else, so an include reads only what it is allowed to: a regular
`.wire` file of at most MAX_SPEC_BYTES (`syntax/parse.py` owns the limits of a file's text),
inside the root spec's project folder (the nearest folder above the root spec holding one of
PROJECT_MARKERS; the root spec's own folder when there is none) or inside a folder given explicitly (`--include-path DIR`, the `include_paths`
argument, or WIRELANG_INCLUDE_PATH). Paths resolve relative to the including file, symlinks
followed, before they are checked. A refused include is reported by its path alone: the file
is never opened, so no line of it reaches a message.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wirelang.diagnostics import Diagnostic, Reporter, Span, SpecError
from wirelang.syntax import ast
from wirelang.syntax.parse import MAX_SPEC_BYTES, parse_bytes

MAX_INCLUDE_DEPTH = 32
PROJECT_MARKERS = ("pyproject.toml", "wirelang.toml", ".git")
INCLUDE_PATH_ENV = "WIRELANG_INCLUDE_PATH"


@dataclass
class Program:
    root: ast.File
    files: list[ast.File]  # included files first, the root last


def display_path(path: Path) -> str:
    """Paths in messages and artifacts are relative when possible: no absolute paths leak."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_spec(path: Path, shown: str | None = None, where: Span | None = None) -> ast.File:
    """Parse one spec file: a regular file (never a device or a FIFO) of bounded size."""
    shown = shown or display_path(path)
    span = where or Span(path=shown, line=1, col=1, end_line=1, end_col=1)

    def fail(reason: str) -> SpecError:
        return SpecError([Diagnostic(span, f"cannot read `{shown}`: {reason}")])

    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise fail("not a regular file")
            # In pieces: `read(MAX_SPEC_BYTES + 1)` would set aside the whole limit (64 MiB)
            # for every spec, however small.
            pieces: list[bytes] = []
            size = 0
            while size <= MAX_SPEC_BYTES:
                piece = f.read(1 << 20)
                if not piece:
                    break
                pieces.append(piece)
                size += len(piece)
            data = b"".join(pieces)
    except OSError as err:
        reason = (
            "no such file"
            if isinstance(err, FileNotFoundError)
            else (err.strerror or str(err)).lower()
        )
        raise fail(reason) from None
    if len(data) > MAX_SPEC_BYTES:
        raise fail(f"larger than the limit of {MAX_SPEC_BYTES // 2**20} MiB for a spec")
    return parse_bytes(data, shown)


def project_folder(spec: Path) -> Path:
    """The folder whose tree a spec's includes may read: the nearest folder above `spec` with a
    project marker, else the spec's own folder."""
    folder = spec.resolve().parent
    for candidate in (folder, *folder.parents):
        if candidate.parent == candidate:  # the file system's root is never a project
            break
        if any((candidate / m).exists() for m in PROJECT_MARKERS):
            return candidate
    return folder


def include_roots(root_spec: Path, include_paths: Sequence[str | Path] = ()) -> list[Path]:
    extra = [p for p in os.environ.get(INCLUDE_PATH_ENV, "").split(os.pathsep) if p]
    return [project_folder(root_spec)] + [
        Path(p).expanduser().resolve() for p in [*include_paths, *extra]
    ]


def load(
    path: str | Path, text: str | None = None, include_paths: Sequence[str | Path] = ()
) -> Program:
    path = Path(path)
    if text is not None:
        from wirelang.syntax.parse import parse_text

        root = parse_text(text, display_path(path))
    else:
        root = read_spec(path)
    files: list[ast.File] = []
    seen: set[Path] = set()
    rep = Reporter()
    _includes(
        root, path.resolve(), files, seen, [path.resolve()], rep, include_roots(path, include_paths)
    )
    rep.raise_if_any()
    files.append(root)
    return Program(root, files)


def _refusal(written: str, target: Path, roots: list[Path]) -> tuple[str, str] | None:
    """Why an include may not be read (message, hint), or None when it may."""
    if target.suffix != ".wire":
        return f"`{written}` is not a .wire file", "only .wire files can be included"
    if not any(target.is_relative_to(r) for r in roots):
        where = ", ".join(f"`{display_path(r)}`" for r in roots)
        return (
            f"`{written}` is outside the folders includes may read ({where})",
            "copy the file next to the spec, or allow its folder with `--include-path DIR`",
        )
    return None


def _includes(
    file: ast.File,
    path: Path,
    out: list[ast.File],
    seen: set[Path],
    stack: list[Path],
    rep: Reporter,
    roots: list[Path],
) -> None:
    for item in file.items:
        if not isinstance(item, ast.IncludeDecl):
            continue
        try:
            target = (path.parent / item.path).resolve()
        except (
            OSError,
            RuntimeError,
            ValueError,
        ) as err:  # a loop of symlinks, a NUL, a name too long
            rep.error(
                item.span,
                f"cannot include `{item.path[:200]}`: {getattr(err, 'strerror', None) or err}",
            )
            continue
        refused = _refusal(item.path[:200], target, roots)
        if refused is not None:
            rep.error(item.span, *refused)
            continue
        if target in stack:
            chain = " -> ".join(p.name for p in stack[stack.index(target) :] + [target])
            rep.error(
                item.span,
                f"include cycle: {chain}",
                "an included file must not include the file that includes it",
            )
            continue
        if target in seen:
            continue
        if len(stack) > MAX_INCLUDE_DEPTH:
            rep.error(item.span, f"includes nested deeper than {MAX_INCLUDE_DEPTH} files")
            continue
        seen.add(target)
        try:
            exists = target.exists()
        except OSError:
            exists = False
        if not exists:
            rep.error(
                item.span,
                f"cannot read `{display_path(target)}`: no such file",
                _missing_hint(item.path, path.parent),
            )
            continue
        try:
            child = read_spec(target, display_path(target), where=item.span)
        except SpecError as err:
            rep.diagnostics.extend(err.diagnostics)
            continue
        for sub in child.items:
            if isinstance(sub, ast.NetworkDecl):
                rep.error(
                    sub.span,
                    f"an included file cannot define a network (`{sub.name}`)",
                    "keep networks in specs/*.wire and only lets and templates in included files",
                )
        _includes(child, target, out, seen, stack + [target], rep, roots)
        out.append(child)


def _missing_hint(written: str, folder: Path) -> str:
    """The closest existing file to a missing include, or where include paths start from."""
    target = folder / written
    try:
        siblings = (
            sorted(p.name for p in target.parent.glob("*.wire")) if target.parent.is_dir() else []
        )
    except OSError:  # a name too long to look up (ENAMETOOLONG): no close match to offer
        siblings = []
    close = difflib.get_close_matches(target.name, siblings, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{(Path(written).parent / close[0]).as_posix()}`?"
    return f"an include path is relative to the including file's folder, `{display_path(folder)}`"
