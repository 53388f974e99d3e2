"""The one place that finds `wire.lark` and builds the parser from it.

In a source checkout the grammar is `grammars/wire.lark` at the top of the repository; in an
installed wheel it is shipped as `wirelang/_grammars/wire.lark` (see pyproject's force-include).
Building the LALR tables takes most of a second, so lark caches them on disk keyed by the
grammar's hash; a warm `wirelang check` then starts in well under half a second.

lark reads its cache with pickle, which runs whatever code the file names. So the cache lives
only in a folder that no one but this user can write: `$XDG_CACHE_HOME/wirelang` or
`~/.cache/wirelang`, created 0700, and used only while it and its parent belong to this user
and are writable by no one else. Otherwise (a shared or foreign cache home, or no home at all)
the tables are built each time, never cached in the shared temporary folder.
"""

from __future__ import annotations

import functools
import os
import stat
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


def _private(folder: str) -> bool:
    """Whether `folder` is a real folder owned by this user that no one else can write."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


def _cache_file() -> str | None:
    """The per-user cache file of the tables, or None where no private folder can hold it."""
    if not hasattr(os, "getuid"):  # no owners to check (Windows): build the tables each time
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None
    folder = os.path.join(base, "wirelang")
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return None
    # The parent too: whoever can write it can swap `folder` for one of their own.
    if not (_private(base) and _private(folder)):
        return None
    # lark embeds the grammar's hash in the file, so a stale one is rebuilt, not misread
    return os.path.join(folder, "wire-lark.cache")


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
    cache = _cache_file()
    if cache is not None:
        try:
            return Lark(text, cache=f"{cache}.{start}", **options)
        except OSError:  # an unwritable cache only costs time
            pass
    return Lark(text, **options)
