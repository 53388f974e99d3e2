"""Located errors: every mistake a spec author can make is reported as `path:line:col`.

A `SpecError` carries one or more `Diagnostic`s. Rendering shows the source line and a caret
under the span, then a hint. Passes collect diagnostics in a `Reporter` and keep going, so that
one run of `wirelang check` reports every problem it can find, not just the first.

A warning is a valid spec that will probably not train as meant (an unnormalised feedback loop,
say). The front end raises it as a Python `SpecWarning` once the spec is valid, so library users
can filter it like any warning; the CLI prints it located, like an error, and carries on.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    """Where an object came from: 1-based line and column, end exclusive.

    A plain frozen dataclass, not a pydantic model: the parser makes one per syntax node (a
    large frozen spec has hundreds of thousands), and validating each cost more than the rest
    of building the node. The IR's pydantic models hold spans as they are and serialise them
    to the same fields.
    """

    path: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"

    def model_dump(self) -> dict:
        """The span as a dict, as the syntax tree's `model_dump` shows nested nodes."""
        return {f: getattr(self, f) for f in self.__slots__}


UNKNOWN = Span(path="<unknown>", line=1, col=1, end_line=1, end_col=2)


@dataclass(frozen=True)
class Diagnostic:
    span: Span
    message: str
    hint: str | None = None
    # A second place involved in the problem (the other definition of a duplicate name, ...).
    related: tuple[tuple[Span, str], ...] = ()
    severity: str = "error"  # or "warning", or "note" (information; `check` still passes)


class SpecWarning(UserWarning):
    """A valid spec that will probably not work as meant; `.diagnostic` says where and why."""

    def __init__(self, diagnostic: Diagnostic):
        self.diagnostic = diagnostic
        super().__init__(f"{diagnostic.span}: {diagnostic.message}")


class SpecError(Exception):
    """A problem in a spec. Never a bug in wirelang: the CLI prints it and exits 2."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = sorted(
            diagnostics, key=lambda d: (d.span.path, d.span.line, d.span.col, d.message)
        )
        super().__init__("\n".join(f"{d.span}: {d.message}" for d in self.diagnostics))


# Source text by path, so that a diagnostic can show its line long after parsing; split into
# lines once, at the first diagnostic that needs it (not once per diagnostic: a large spec with
# many problems would be split again for each).
_SOURCES: dict[str, str] = {}
_LINES: dict[str, list[str]] = {}


def remember_source(path: str, text: str) -> None:
    _SOURCES[path] = text
    _LINES.pop(path, None)


def source_line(path: str, line: int) -> str | None:
    text = _SOURCES.get(path)
    if text is None:
        return None
    lines = _LINES.get(path)
    if lines is None:
        lines = _LINES[path] = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else None


def render(diag: Diagnostic) -> str:
    """`path:line:col: error: message` (or `warning:`), the line, a caret, and the hint."""
    out = [f"{diag.span}: {diag.severity}: {diag.message}"]
    out.extend(_excerpt(diag.span))
    for span, note in diag.related:
        out.append(f"{span}: note: {note}")
        out.extend(_excerpt(span))
    if diag.hint:
        out.append(f"  = help: {diag.hint}")
    return "\n".join(out)


MAX_EXCERPT = 120  # characters of a source line shown under a message


def _excerpt(span: Span) -> list[str]:
    text = source_line(span.path, span.line)
    if text is None:
        return []
    text = text.replace("\t", " ")
    col = span.col
    width = max(
        1, (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
    )
    if len(text) > MAX_EXCERPT:  # a very long line: show a window around the span
        start = max(0, min(col - 1 - MAX_EXCERPT // 4, len(text) - MAX_EXCERPT))
        shown = (
            ("..." if start else "")
            + text[start : start + MAX_EXCERPT]
            + ("..." if start + MAX_EXCERPT < len(text) else "")
        )
        col = col - start + (3 if start else 0)
        width = max(1, min(width, start + MAX_EXCERPT - span.col + 1))
        text = shown
    gutter = f"{span.line:>4} | "
    return [gutter + text, " " * (len(gutter) + col - 1) + "^" * width]


def render_error(err: SpecError) -> str:
    return "\n\n".join(render(d) for d in err.diagnostics)


def did_you_mean(name: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest of `choices`, or listing them when there are few."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(name, options, n=4, cutoff=0.6)
    best = [c for c in close if _ratio(name, c) == _ratio(name, close[0])] if close else []
    if 1 <= len(best) <= 3:  # equally close names are all shown, in order
        best.sort()
        return (
            "did you mean "
            + (
                " or ".join(f"`{c}`" for c in best)
                if len(best) < 3
                else f"`{best[0]}`, `{best[1]}` or `{best[2]}`"
            )
            + "?"
        )
    if 0 < len(options) <= 12:
        return "expected one of: " + ", ".join(f"`{o}`" for o in options)
    return f"did you mean `{sorted(best)[0]}`?" if best else None


def _ratio(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


@dataclass
class Reporter:
    """Collects diagnostics; `raise_if_any` ends a stage that found problems."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

    def error(self, span: Span, message: str, hint: str | None = None, related=()) -> None:
        self.diagnostics.append(Diagnostic(span, message, hint, tuple(related)))

    def warn(self, span: Span, message: str, hint: str | None = None, related=()) -> None:
        self.warnings.append(Diagnostic(span, message, hint, tuple(related), severity="warning"))

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise SpecError(self.diagnostics)

    def emit_warnings(self) -> None:
        """Raise each warning as a `SpecWarning` (a valid spec: errors would have been raised)."""
        for d in sorted(
            self.warnings, key=lambda d: (d.span.path, d.span.line, d.span.col, d.message)
        ):
            warnings.warn(SpecWarning(d), stacklevel=3)
