"""The one place that finds `wire.lark` and builds the parser from it.

In a source checkout the grammar is `grammars/wire.lark` at the top of the repository; in an
installed wheel it is shipped as `wirelang/_grammars/wire.lark` (see pyproject's force-include).
Building the LALR tables takes most of a second, so lark caches them on disk keyed by the
grammar's hash; a warm `wirelang check` then starts in well under half a second.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from lark import Lark, Token

_HERE = Path(__file__).resolve().parent


def grammar_path() -> Path:
    for candidate in (
        _HERE.parent / "_grammars" / "wire.lark",
        _HERE.parents[1] / "grammars" / "wire.lark",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("wire.lark is missing from this installation of wirelang")


def _cache_file() -> str | bool:
    # A per-user cache directory; lark embeds the grammar hash in the cache, so a stale file
    # is rebuilt rather than misread.
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "wirelang")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        folder = tempfile.gettempdir()
    return os.path.join(folder, f"wire-lark-{os.getuid() if hasattr(os, 'getuid') else 0}.cache")


# Comments are ignored by the grammar but kept for `wirelang fmt`: the lexer hands each one to
# whatever list the current parse has put here (lark takes callbacks only at construction).
comment_sink: list[Token] = []


def _keep_comment(tok: Token) -> Token:
    comment_sink.append(tok)
    return tok


@functools.cache
def parser(start: str = "start") -> Lark:
    text = grammar_path().read_text(encoding="utf-8")
    options = dict(
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        strict=True,
        start=start,
        lexer_callbacks={"COMMENT": _keep_comment},
    )
    try:
        return Lark(text, cache=_cache_file() + f".{start}", **options)
    except OSError:  # an unwritable cache only costs time
        return Lark(text, **options)
