"""Mutation fuzzing of the checker: no input may crash it, hang it, or point outside the file.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fuzz.py --cases 10000 [--seed 0]

Each case takes a shipped spec (`specs/*.wire`, as written or with its includes inlined) and
applies one to three mutations. Small ones: a line deleted, duplicated or swapped; the file
truncated; a number replaced by 0, -1, 1e308 or a 401-digit integer; a word replaced by another
word of the corpus or a registered name; a stray bracket; a NUL byte; bytes that are not UTF-8;
a random byte flipped. Depth and size ones: a number replaced by an expression nested hundreds
or thousands of levels deep (parentheses, sums, negations, lists, calls) or a block nested as
deep; a numeral of thousands of digits (integer, decimal, exponent) in one or every numeric
position; a name thousands of characters long; a long include path; an include of a FIFO,
/dev/zero, a directory, a dangling symlink or a file outside the folder; a huge repeat count or
node count. The case is written next to a copy of `specs/lib/` (so that its includes resolve)
and checked with `check_file` in a worker process whose address space is limited
(MEMORY_LIMIT above what it holds at start) and which is killed after HANG_LIMIT seconds.
The only acceptable outcomes are success or diagnostics located in the file (or in an included
file) at a line that exists, within its limit of CPU time. Anything else (a traceback, a hang,
a worker killed by the memory limit, a foreign location) is printed with its input and makes
the exit status 1. The report is appended to `benchmarks/results/fuzz.md` as a dated section.
`tests/test_fuzz.py` runs the same mutations in-process under hypothesis.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import multiprocessing
import os
import random
import re
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.wire"))
TIME_LIMIT = 1.0  # CPU seconds per check of a spec of ordinary size
HANG_LIMIT = 60.0  # wall seconds (plus WAIT_FACTOR x the time limit) before a case is a hang
WAIT_FACTOR = 20  # a worker at nice 10 on a busy machine can get a twentieth of a core
PARSE_BYTES = 20_000  # bytes of a token-dense spec parsed per TIME_LIMIT (see `time_limit`)
MEMORY_LIMIT = 2 * 2**30  # bytes of address space a worker may add to what it holds at start

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


# ---------------------------------------------------------------- depth and size mutations
# Depths around the parser's limit (150) and far beyond it; sizes around Python's limit on
# converting integers to text (4,300 digits) and far beyond it.
# (The largest sizes cost seconds of parsing per case each; `tests/test_fuzz.py` keeps a few far
# larger ones as regression cases.)
DEPTHS = (50, 149, 150, 151, 1000, 5000)
DIGITS = (1000, 4300, 4301, 20000)
NAME_LENGTHS = (255, 256, 5000, 20000)
PATH_LENGTHS = (255, 256, 4096, 5000, 20000)
# A cap on the every-number variant: lark parses some 20,000 to 50,000 tokens a second, so a
# token-dense multi-megabyte case takes minutes to be refused (linear, but it would stall the run).
EVERY_NUMBER_BYTES = 200_000
REPEATS = (b"10^9", b"10^18", b"2^64", b"1e308", b"-1", b"10^5000", b"1" + b"0" * 5000)
# Made by `workspace()` next to the cases: special files an include may name.
SPECIAL_INCLUDES = (
    b"fifo.wire",
    b"zero.wire",  # a symlink to /dev/zero
    b"folder.wire",  # a directory
    b"dangling.wire",  # a symlink to nothing
    b"loop.wire",  # a symlink to itself
    b"/dev/zero",
    b"/dev/null",
    b"/proc/self/environ",
    b"/proc/self/mem",
    b"../../../../../../etc/passwd",
    b"lib",
    b".",
    b"",
    b"lib/tiny.wire\x00.wire",
)


def _replace_numbers(data: bytes, choose: Choose, text: bytes) -> bytes:
    """`text` in place of one number, or (one time in four, when the result stays below
    EVERY_NUMBER_BYTES) of every number."""
    found = list(NUMBER.finditer(data))
    if not found:
        return _insert_item(data, b"let fuzzed = " + text)
    if choose(4) == 0 and len(found) * len(text) <= EVERY_NUMBER_BYTES:
        return NUMBER.sub(lambda m: text, data)
    m = found[choose(len(found))]
    return data[: m.start()] + text + data[m.end() :]


def _insert_item(data: bytes, line: bytes) -> bytes:
    """`line` as the first item inside the network (or at the top of a file without one)."""
    m = re.search(rb"network[^{\n]*\{[^\n]*\n", data)
    i = m.end() if m else 0
    return data[:i] + b"  " + line + b"\n" + data[i:]


def deep_nesting(data: bytes, choose: Choose) -> bytes:
    d = DEPTHS[choose(len(DEPTHS))]
    forms = (
        b"(" * d + b"1" + b")" * d,
        b" + ".join([b"1"] * d),
        b"- " * d + b"1",
        b"[" * d + b"1" + b"]" * d,
        b"max(" * d + b"1" + b", 2)" * d,
        b"-(" * d + b"1" + b")" * d,
    )
    form = choose(len(forms) + 1)
    if form == len(forms):  # blocks rather than expressions
        return _insert_item(data, b"repeat 1 { " * d + b"layers { relu }" + b" }" * d)
    return _replace_numbers(data, choose, forms[form])


def huge_numeral(data: bytes, choose: Choose) -> bytes:
    n = DIGITS[choose(len(DIGITS))]
    forms = (
        b"7" * n,
        b"0." + b"0" * n + b"1",
        b"1e" + b"9" * n,
        b"1e-" + b"9" * n,
        b"1" * n + b".5",
        b"0" * n + b"3",
    )
    return _replace_numbers(data, choose, forms[choose(len(forms))])


def long_name(data: bytes, choose: Choose) -> bytes:
    found = list(WORD.finditer(data))
    name = b"n" + b"a" * (NAME_LENGTHS[choose(len(NAME_LENGTHS))] - 1)
    if not found:
        return data + name
    m = found[choose(len(found))]
    return data[: m.start()] + name + data[m.end() :]


def _include(data: bytes, path: bytes) -> bytes:
    return b'include "' + path + b'"\n' + data


def long_include(data: bytes, choose: Choose) -> bytes:
    n = PATH_LENGTHS[choose(len(PATH_LENGTHS))]
    forms = (
        b"a" * n + b".wire",
        b"a/" * (n // 2) + b"x.wire",
        b"../" * (n // 3) + b"x.wire",
        b"lib/" + b"./" * (n // 2) + b"tiny.wire",
        b"/" + b"b" * n + b"/c.wire",
    )
    return _include(data, forms[choose(len(forms))])


def special_include(data: bytes, choose: Choose) -> bytes:
    return _include(data, SPECIAL_INCLUDES[choose(len(SPECIAL_INCLUDES))])


def big_repeat(data: bytes, choose: Choose) -> bytes:
    count = REPEATS[choose(len(REPEATS))]
    found = list(re.finditer(rb"(repeat\s+)([^{\n]+)(\{)", data)) + list(
        re.finditer(rb"(\[)([0-9]+)(\])", data)
    )
    if not found or choose(3) == 0:
        inner = b"layers { relu }" if choose(2) else b"repeat " + count + b" { layers { relu } }"
        return _insert_item(data, b"repeat " + count + b" { " + inner + b" }")
    m = found[choose(len(found))]
    return data[: m.start(2)] + count + (b" " if m.group(3) == b"{" else b"") + data[m.end(2) :]


# Token counts on either side of the front end's caps (`syntax/parse.py`: 100,000 tokens for the
# parser, 2,000,000 in a file): text dense in tokens is refused before it is parsed.
DENSE_TOKENS = (90_000, 110_000, 1_000_000, 2_100_000)


def dense_tokens(data: bytes, choose: Choose) -> bytes:
    n = DENSE_TOKENS[choose(len(DENSE_TOKENS))]
    items = b", ".join([b"1"] * (n // 2))
    forms = (
        b"let fuzzed = [" + items + b"]",  # one bulk line (read without the parser)
        b"let fuzzed = [" + items + b"]  # c",  # the same with a comment: left to the parser
        b"\n  ".join(b"let f%d = 1  # c" % i for i in range(n // 6)),  # lines for the parser
        b"\n  ".join(b"let f%d = 1 + 2" % i for i in range(n // 7)),  # bulk lines
    )
    return _insert_item(data, forms[choose(len(forms))])


Mutation = Callable[[bytes, Choose], bytes]
SMALL_MUTATIONS: tuple[Mutation, ...] = (
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
DEPTH_AND_SIZE_MUTATIONS: tuple[Mutation, ...] = (
    deep_nesting,
    huge_numeral,
    long_name,
    long_include,
    special_include,
    big_repeat,
    dense_tokens,
)
MUTATIONS = SMALL_MUTATIONS + DEPTH_AND_SIZE_MUTATIONS


def mutate(
    data: bytes, choose: Choose, kinds: tuple[Mutation, ...] = MUTATIONS
) -> tuple[bytes, list[str]]:
    """One to three mutations; returns the new bytes and the names of the mutations applied."""
    applied = []
    for _ in range(1 + choose(3)):
        mutation = kinds[choose(len(kinds))]
        data = mutation(data, choose)
        applied.append(mutation.__name__)
    return data, applied


def workspace() -> Path:
    """A temporary folder holding a copy of `specs/lib/` and the special files of
    SPECIAL_INCLUDES, where mutated specs are written."""
    folder = Path(tempfile.mkdtemp(prefix="wirelang-fuzz-"))
    if (ROOT / "specs" / "lib").is_dir():
        shutil.copytree(ROOT / "specs" / "lib", folder / "lib")
    os.mkfifo(folder / "fifo.wire")
    (folder / "zero.wire").symlink_to("/dev/zero")
    (folder / "folder.wire").mkdir()
    (folder / "dangling.wire").symlink_to(folder / "missing.wire")
    (folder / "loop.wire").symlink_to(folder / "loop.wire")
    return folder


@functools.cache
def corpus() -> tuple[tuple[str, bytes], ...]:
    """Every shipped spec as written, and with its includes inlined (so that mutations reach
    the numbers and names of the library's templates too)."""
    from wirelang.train.runs import self_contained_spec

    written = [(p.name, p.read_bytes()) for p in SPECS]
    inlined = [(f"{p.stem}+inlined.wire", self_contained_spec(p).encode()) for p in SPECS]
    return tuple(written + inlined)


def time_limit(data: bytes) -> float:
    """TIME_LIMIT, plus TIME_LIMIT per PARSE_BYTES of input.

    Checking is linear in the input, but lark's parser handles some 10,000 to 50,000 tokens a
    second here, and a token-dense mutation (`1 + 1 + ...`, `max(max(...`) holds a token every
    two bytes: a 95 kB case takes 1.6 s to be refused, a 626 kB one 10 s. Anything slower than
    linear exceeds this limit quickly."""
    return TIME_LIMIT * (1 + len(data) / PARSE_BYTES)


def check_bytes(data: bytes, path: Path, diagnosed: list[int] | None = None) -> str | None:
    """Write `data` to `path` and check it; None if the outcome is acceptable, else what went wrong.

    The number of diagnostics of an acceptable outcome is appended to `diagnosed`, if given."""
    from wirelang.diagnostics import SpecError
    from wirelang.frontend import check_file

    path.write_bytes(data)
    # CPU seconds, not wall time: the machine is shared, and a worker at low priority can wait
    # many times its own work for a core (a check that blocks shows up as a hang instead)
    start = time.process_time()
    try:
        diags = check_file(path)
    except SpecError as err:  # check_file returns diagnostics; raising them is a bug too
        return f"check_file raised SpecError instead of returning it: {err}"
    except Exception as err:  # noqa: BLE001 - any other exception is the finding
        return f"crash: {type(err).__name__}: {err}"
    elapsed = time.process_time() - start
    limit = time_limit(data)
    if elapsed > limit:
        return f"too slow: {elapsed:.2f} CPU s (limit {limit:.1f} s)"
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
    # per mutation kind: cases it took part in, and how those ended
    by_kind: dict[str, Counter] = field(default_factory=dict)


def _address_space() -> int:
    """Bytes of virtual memory this process holds now (VmSize)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _serve(conn: Connection, folder: Path) -> None:
    """A worker: check each case it is sent, under a limit on its address space."""
    limit = _address_space() + MEMORY_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warm_up()
    while True:
        job = conn.recv()
        if job is None:
            return
        data, name = job
        counts: list[int] = []
        problem = check_bytes(data, folder / name, counts)
        conn.send((problem, counts[0] if counts else 0))


class Worker:
    """One checking process; replaced when it hangs or dies (the case is then a failure)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.start()

    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")  # the parent holds no threads or torch
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.folder), daemon=True)
        self.proc.start()
        child.close()

    def check(self, data: bytes, name: str) -> tuple[str | None, int]:
        self.conn.send((data, name))
        wait = HANG_LIMIT + WAIT_FACTOR * time_limit(data)
        if self.conn.poll(wait):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        else:
            self.proc.kill()  # our own worker, by its handle
            self.proc.join()
            self.start()
            return f"hang: no answer within {wait:.0f} s", 0
        self.proc.join()
        code = self.proc.exitcode
        self.start()
        return f"worker died (exit code {code}; memory limit or a crash in C)", 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def run(cases: int, seed: int) -> Outcome:
    rng = random.Random(seed)
    sources = corpus()
    folder = workspace()
    worker = Worker(folder)
    out = Outcome(cases=cases)
    start = time.perf_counter()
    try:
        for i in range(cases):
            name, original = sources[rng.randrange(len(sources))]
            data, applied = mutate(original, rng.randrange)
            problem, diagnostics = worker.check(data, f"case{i}.wire")
            outcome = "failed" if problem else ("diagnosed" if diagnostics else "passed")
            for kind in set(applied):
                out.by_kind.setdefault(kind, Counter())[outcome] += 1
            if problem is not None:
                out.failures.append((name, applied, problem, data))
                print(f"case {i}: {name} {applied}: {problem[:300]}", file=sys.stderr, flush=True)
            elif diagnostics:
                out.diagnosed += 1
            else:
                out.passed += 1
            (folder / f"case{i}.wire").unlink(missing_ok=True)
            if (i + 1) % 500 == 0:
                print(
                    f"{i + 1} cases, {len(out.failures)} failures, "
                    f"{time.perf_counter() - start:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        worker.close()
        shutil.rmtree(folder, ignore_errors=True)
    out.seconds = time.perf_counter() - start
    return out


def _shown(data: bytes, limit: int = 3000) -> str:
    text = data.decode("utf-8", "replace")
    return (
        text
        if len(text) <= limit
        else text[:limit] + f"\n... ({len(text) - limit} more characters)"
    )


def report(seed: int, out: Outcome, when: str | None = None) -> str:
    when = when or datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {when}: {out.cases} cases with depth and size mutations",
        "",
        f"`OMP_NUM_THREADS=1 nice -n 10 python benchmarks/fuzz.py --cases {out.cases} --seed {seed}`: "
        f"mutations of the {len(SPECS)} shipped specs (`specs/*.wire`, as written and with their "
        "includes inlined), one to three per case, each case checked with "
        "`wirelang.frontend.check_file` in a worker process limited to "
        f"{MEMORY_LIMIT // 2**30} GiB of address space above its start and killed after "
        f"{HANG_LIMIT:g} s plus {WAIT_FACTOR} times its time limit (a hang). Time limit per case: "
        f"{TIME_LIMIT:g} CPU s plus {TIME_LIMIT:g} s "
        f"per {PARSE_BYTES // 1000} kB of input (lark parses a token-dense spec at about that rate).",
        "",
        "| cases | passed | rejected with located diagnostics | failures | wall time | per case |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {out.cases} | {out.passed} | {out.diagnosed} | {len(out.failures)} | {out.seconds:.1f} s | "
        f"{1000 * out.seconds / max(out.cases, 1):.1f} ms |",
        "",
        "Cases by mutation kind (a case with several kinds counts under each):",
        "",
        "| mutation | cases | passed | diagnosed | failures |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in MUTATIONS:
        c = out.by_kind.get(m.__name__, Counter())
        lines.append(
            f"| {m.__name__} | {sum(c.values())} | {c['passed']} | {c['diagnosed']} | {c['failed']} |"
        )
    lines.append("")
    if not out.failures:
        lines.append(
            "Result: every case either passed the checker or gave located diagnostics inside the "
            "file, within its time limit; no traceback, no hang, no memory blowup, no crash."
        )
        lines.append("")
    for name, applied, problem, data in out.failures[:20]:
        lines += [
            f"### {name} ({', '.join(applied)})",
            "",
            problem,
            "",
            "```",
            _shown(data),
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
    before = args.out.read_text(encoding="utf-8") if args.out.exists() else "# Checker fuzzing\n"
    args.out.write_text(before.rstrip("\n") + "\n\n" + text, encoding="utf-8")
    return 1 if out.failures else 0


if __name__ == "__main__":
    sys.exit(main())
