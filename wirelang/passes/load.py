"""Read a spec and everything it includes, in include order (depth first, each file once).

A spec file holds exactly one `network`; an included file (by convention in `specs/lib/`) holds
only `let`s, `template`s and further includes. Include cycles are errors at the include
statement that closes them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from wirelang.diagnostics import Diagnostic, Reporter, Span, SpecError
from wirelang.syntax import ast
from wirelang.syntax.parse import parse_bytes

MAX_INCLUDE_DEPTH = 32


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
    shown = shown or display_path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        span = where or Span(path=shown, line=1, col=1, end_line=1, end_col=1)
        reason = "no such file" if isinstance(err, FileNotFoundError) else (err.strerror or str(err)).lower()
        raise SpecError([Diagnostic(span, f"cannot read `{shown}`: {reason}")]) from None
    return parse_bytes(data, shown)


def load(path: str | Path, text: str | None = None) -> Program:
    path = Path(path)
    if text is not None:
        from wirelang.syntax.parse import parse_text

        root = parse_text(text, display_path(path))
    else:
        root = read_spec(path)
    files: list[ast.File] = []
    seen: set[Path] = set()
    rep = Reporter()
    _includes(root, path.resolve(), files, seen, [path.resolve()], rep)
    rep.raise_if_any()
    files.append(root)
    return Program(root, files)


def _includes(file: ast.File, path: Path, out: list[ast.File], seen: set[Path], stack: list[Path], rep: Reporter) -> None:
    for item in file.items:
        if not isinstance(item, ast.IncludeDecl):
            continue
        target = (path.parent / item.path).resolve()
        if target in stack:
            chain = " -> ".join(p.name for p in stack[stack.index(target):] + [target])
            rep.error(item.span, f"include cycle: {chain}", "an included file must not include the file that includes it")
            continue
        if target in seen:
            continue
        if len(stack) > MAX_INCLUDE_DEPTH:
            rep.error(item.span, f"includes nested deeper than {MAX_INCLUDE_DEPTH} files")
            continue
        seen.add(target)
        if not target.exists():
            rep.error(item.span, f"cannot read `{display_path(target)}`: no such file", _missing_hint(item.path, path.parent))
            continue
        try:
            child = read_spec(target, display_path(target), where=item.span)
        except SpecError as err:
            rep.diagnostics.extend(err.diagnostics)
            continue
        for sub in child.items:
            if isinstance(sub, ast.NetworkDecl):
                rep.error(sub.span, f"an included file cannot define a network (`{sub.name}`)",
                          "keep networks in specs/*.wire and only lets and templates in included files")
        _includes(child, target, out, seen, stack + [target], rep)
        out.append(child)


def _missing_hint(written: str, folder: Path) -> str:
    """The closest existing file to a missing include, or where include paths start from."""
    target = folder / written
    siblings = sorted(p.name for p in target.parent.glob("*.wire")) if target.parent.is_dir() else []
    close = difflib.get_close_matches(target.name, siblings, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{(Path(written).parent / close[0]).as_posix()}`?"
    return f"an include path is relative to the including file's folder, `{display_path(folder)}`"
