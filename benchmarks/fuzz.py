"""Mutation fuzzing of the checker: no input may crash it, hang it, or point outside the file.

    python benchmarks/fuzz.py --cases 5000 [--seed 0] [--out benchmarks/results/fuzz.md]

Each case takes a shipped spec (`specs/*.wire`), applies one to three mutations (a line deleted,
duplicated or swapped; the file truncated; a number replaced by 0, -1, 1e308 or a 401-digit
integer; a word replaced by another word of the corpus or a registered name; a stray bracket; a NUL byte; bytes that are not UTF-8; a random byte flipped), writes it
next to a copy of `specs/lib/` so that its includes resolve, and runs `check_file` in-process.
The only acceptable outcomes are success or diagnostics located in the file (or in an included
file) at a line that exists, within one second. Anything else is printed with its input and
makes the exit status 1. `tests/test_fuzz.py` runs the same mutations under hypothesis.
"""

from __future__ import annotations

import argparse
import functools
import random
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.wire"))
TIME_LIMIT = 1.0  # seconds per check, wall clock

# `choose(n)` returns an integer in [0, n): random.randrange or a hypothesis draw, so that the
# benchmark and the property test share one set of mutations.
Choose = Callable[[int], int]

NUMBER = re.compile(rb"(?<![A-Za-z_0-9.])[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
NUMBERS = (b"0", b"-1", b"1e308", b"1" + b"0" * 400)
BRACKETS = (b"{", b"}", b"[", b"]", b"(", b")")
NOT_UTF8 = (b"\xff", b"\xc3", b"\xe9", b"\x80\x80", b"\xed\xa0\x80")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def delete_line(data: bytes, choose: Choose) -> bytes:
    lines = _lines(data)
    del lines[choose(len(lines))]
    return b"\n".join(lines)


def duplicate_line(data: bytes, choose: Choose) -> bytes:
    lines = _lines(data)
    i = choose(len(lines))
    lines.insert(i, lines[i])
    return b"\n".join(lines)


def swap_lines(data: bytes, choose: Choose) -> bytes:
    lines = _lines(data)
    i, j = choose(len(lines)), choose(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines)


def truncate(data: bytes, choose: Choose) -> bytes:
    return data[: choose(len(data) + 1)]


def replace_number(data: bytes, choose: Choose) -> bytes:
    found = list(NUMBER.finditer(data))
    if not found:
        return data
    m = found[choose(len(found))]
    return data[: m.start()] + NUMBERS[choose(len(NUMBERS))] + data[m.end() :]


WORD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")


@functools.cache
def vocabulary() -> tuple[bytes, ...]:
    """Words worth swapping in: every word of the corpus and every registered name."""
    from wirelang import methods, ops, train_config

    words = {m.group() for p in SPECS for m in WORD.finditer(p.read_bytes())}
    words |= {
        w.encode()
        for w in [*ops.list_ops(), *methods.WIRINGS, *methods.SEMANTICS, *train_config.DATASETS]
    }
    return tuple(sorted(words))


def replace_word(data: bytes, choose: Choose) -> bytes:
    found = list(WORD.finditer(data))
    if not found:
        return data
    m, words = found[choose(len(found))], vocabulary()
    return data[: m.start()] + words[choose(len(words))] + data[m.end() :]


def _insert(data: bytes, choose: Choose, what: bytes) -> bytes:
    i = choose(len(data) + 1)
    return data[:i] + what + data[i:]


def stray_bracket(data: bytes, choose: Choose) -> bytes:
    return _insert(data, choose, BRACKETS[choose(len(BRACKETS))])


def nul_byte(data: bytes, choose: Choose) -> bytes:
    return _insert(data, choose, b"\x00")


def not_utf8(data: bytes, choose: Choose) -> bytes:
    return _insert(data, choose, NOT_UTF8[choose(len(NOT_UTF8))])


def flip_byte(data: bytes, choose: Choose) -> bytes:
    if not data:
        return data
    i = choose(len(data))
    return data[:i] + bytes([data[i] ^ (1 + choose(255))]) + data[i + 1 :]


MUTATIONS: tuple[Callable[[bytes, Choose], bytes], ...] = (
    delete_line,
    duplicate_line,
    swap_lines,
    truncate,
    replace_number,
    replace_word,
    stray_bracket,
    nul_byte,
    not_utf8,
    flip_byte,
)


def mutate(data: bytes, choose: Choose) -> tuple[bytes, list[str]]:
    """One to three mutations; returns the new bytes and the names of the mutations applied."""
    applied = []
    for _ in range(1 + choose(3)):
        mutation = MUTATIONS[choose(len(MUTATIONS))]
        data = mutation(data, choose)
        applied.append(mutation.__name__)
    return data, applied


def workspace() -> Path:
    """A temporary folder holding a copy of `specs/lib/`, where mutated specs are written."""
    folder = Path(tempfile.mkdtemp(prefix="wirelang-fuzz-"))
    if (ROOT / "specs" / "lib").is_dir():
        shutil.copytree(ROOT / "specs" / "lib", folder / "lib")
    return folder


def check_bytes(data: bytes, path: Path, diagnosed: list[int] | None = None) -> str | None:
    """Write `data` to `path` and check it; None if the outcome is acceptable, else what went wrong.

    The number of diagnostics of an acceptable outcome is appended to `diagnosed`, if given."""
    from wirelang.diagnostics import SpecError
    from wirelang.frontend import check_file

    path.write_bytes(data)
    start = time.perf_counter()
    try:
        diags = check_file(path)
    except SpecError as err:  # check_file returns diagnostics; raising them is a bug too
        return f"check_file raised SpecError instead of returning it: {err}"
    except Exception as err:  # noqa: BLE001 - any other exception is the finding
        return f"crash: {type(err).__name__}: {err}"
    elapsed = time.perf_counter() - start
    if elapsed > TIME_LIMIT:  # once more: a busy machine can stall one run, a slow input stays slow
        start = time.perf_counter()
        check_file(path)
        elapsed = min(elapsed, time.perf_counter() - start)
        if elapsed > TIME_LIMIT:
            return f"too slow: {elapsed:.2f} s"
    lines = {path.resolve(): data.count(b"\n") + 1}
    for lib in (path.parent / "lib").glob("*.wire"):
        lines[lib.resolve()] = lib.read_bytes().count(b"\n") + 1
    for d in diags:
        where = Path(d.span.path)
        where = (where if where.is_absolute() else Path.cwd() / where).resolve()
        if where not in lines:
            return f"diagnostic in a foreign file `{d.span.path}`: {d.message}"
        if not 1 <= d.span.line <= lines[where]:
            return f"diagnostic at line {d.span.line} of a {lines[where]}-line file: {d.message}"
    if diagnosed is not None:
        diagnosed.append(len(diags))
    return None


def warm_up() -> None:
    """Build the parser once, so that no case is timed with lark's table construction."""
    from wirelang.syntax.grammar import parser

    parser()


@dataclass
class Outcome:
    cases: int = 0
    passed: int = 0  # checked without a diagnostic (e.g. a mutation inside a comment)
    diagnosed: int = 0  # rejected with located diagnostics
    seconds: float = 0.0
    failures: list[tuple[str, list[str], str, bytes]] = field(default_factory=list)


def run(cases: int, seed: int) -> Outcome:
    warm_up()
    rng = random.Random(seed)
    folder = workspace()
    sources = [(p.name, p.read_bytes()) for p in SPECS]
    out, counts = Outcome(cases=cases), []
    start = time.perf_counter()
    try:
        for i in range(cases):
            name, original = sources[rng.randrange(len(sources))]
            data, applied = mutate(original, rng.randrange)
            problem = check_bytes(data, folder / f"case{i}.wire", counts)
            if problem is not None:
                out.failures.append((name, applied, problem, data))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out.seconds = time.perf_counter() - start
    out.passed = sum(1 for n in counts if n == 0)
    out.diagnosed = len(counts) - out.passed
    return out


def report(seed: int, out: Outcome) -> str:
    lines = [
        "# Checker fuzzing",
        "",
        f"`python benchmarks/fuzz.py --cases {out.cases} --seed {seed}`: mutations of the {len(SPECS)} shipped specs "
        "(`specs/*.wire`), each checked in-process with `wirelang.frontend.check_file`. Mutations: "
        + ", ".join(m.__name__ for m in MUTATIONS)
        + " (one to three per case).",
        "",
        "| cases | passed | rejected with located diagnostics | failures | wall time | per case |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {out.cases} | {out.passed} | {out.diagnosed} | {len(out.failures)} | {out.seconds:.1f} s | "
        f"{1000 * out.seconds / max(out.cases, 1):.1f} ms |",
        "",
    ]
    if not out.failures:
        lines.append(
            "Result: every case either passed the checker or gave located diagnostics inside the file, "
            f"each within {TIME_LIMIT:g} s; no crash."
        )
    for name, applied, problem, data in out.failures[:20]:
        lines += [
            f"## {name} ({', '.join(applied)})",
            "",
            problem,
            "",
            "```",
            data.decode("utf-8", "replace"),
            "```",
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fuzz.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    out = run(args.cases, args.seed)
    text = report(args.seed, out)
    print(text, end="")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    return 1 if out.failures else 0


if __name__ == "__main__":
    sys.exit(main())
