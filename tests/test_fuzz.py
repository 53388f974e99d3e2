"""No input crashes or hangs the checker: hypothesis over mutations of the shipped specs.

The mutations and the acceptance rule live in `benchmarks/fuzz.py` (which runs thousands of
cases; see benchmarks/results/fuzz.md): success, or diagnostics located in the file (or in an
included file) at a line that exists, each check within one second of wall time.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "wirelang_benchmarks_fuzz", ROOT / "benchmarks" / "fuzz.py"
)
assert _spec is not None and _spec.loader is not None
fuzz = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = fuzz  # dataclasses look their module up there
_spec.loader.exec_module(fuzz)
# In the test suite the time limit only detects hangs (no timed assertions in tests); the
# one-second figure per file is measured and recorded by benchmarks/fuzz.py itself.
fuzz.TIME_LIMIT = 20.0


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    where = fuzz.workspace()
    fuzz.warm_up()
    yield where
    shutil.rmtree(where, ignore_errors=True)


def test_the_corpus_is_there() -> None:
    assert len(fuzz.SPECS) >= 1
    assert (ROOT / "specs" / "cifar_tiny.wire") in fuzz.SPECS


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_mutated_specs_never_crash(folder: Path, data: st.DataObject) -> None:
    spec = data.draw(st.sampled_from(fuzz.SPECS), label="spec")
    # the small mutations here; the depth and size ones (slower per case) are sampled below
    mutated, applied = fuzz.mutate(
        spec.read_bytes(), lambda n: data.draw(st.integers(0, n - 1)), fuzz.SMALL_MUTATIONS
    )
    problem = fuzz.check_bytes(mutated, folder / "case.wire")
    assert problem is None, f"{spec.name} after {applied}: {problem}"


@pytest.mark.parametrize("mutation", fuzz.DEPTH_AND_SIZE_MUTATIONS, ids=lambda m: m.__name__)
def test_depth_and_size_mutations_never_crash(folder: Path, mutation) -> None:
    """Each depth and size mutation, a few seeded draws on a small spec."""
    import random

    rng = random.Random(mutation.__name__)
    for _ in range(4):
        mutated = mutation(CIFAR, rng.randrange)
        problem = fuzz.check_bytes(mutated, folder / "case.wire")
        assert problem is None, f"{mutation.__name__}: {problem[:300]}"


def test_special_files_are_there(folder: Path) -> None:
    import stat

    assert stat.S_ISFIFO((folder / "fifo.wire").lstat().st_mode)
    assert (folder / "folder.wire").is_dir()
    assert (folder / "dangling.wire").is_symlink() and not (folder / "dangling.wire").exists()


@pytest.mark.parametrize("special", fuzz.SPECIAL_INCLUDES, ids=lambda b: b.decode(errors="replace"))
def test_special_includes_are_located_errors(folder: Path, special: bytes) -> None:
    from wirelang.frontend import check_file

    (folder / "case.wire").write_bytes(b'include "' + special + b'"\n' + CIFAR)
    diags = check_file(folder / "case.wire")
    assert diags and all(d.span.line == 1 for d in diags), [d.message for d in diags]


# Inputs that crashed the checker once (found by benchmarks/fuzz.py), and a few edge cases.
CIFAR = (ROOT / "specs" / "cifar_tiny.wire").read_bytes()
REGRESSIONS = {
    "401-digit integer": CIFAR.replace(
        b"classes 10", b"classes 1" + b"0" * 400
    ),  # OverflowError in a message
    "1e308 as a channel count": CIFAR.replace(
        b"conv(16,", b"conv(1e308,"
    ),  # a 309-digit size reached `limits`
    "1e400 literal": CIFAR.replace(b"batch 512", b"batch 1e400"),
    "empty file": b"",
    "only a newline": b"\n",
    "byte-order mark": b"\xef\xbb\xbf" + CIFAR,
    "lone carriage returns": CIFAR.replace(b"\n", b"\r"),
    "NUL at the start": b"\x00" + CIFAR,
    "invalid byte at the end": CIFAR + b"\xff",
    "huge group": CIFAR.replace(b"nodes out[100] output", b"nodes out[1] * 10000 output"),
    "nested repeats": CIFAR.replace(
        b"  head {", b"  repeat 10000 { repeat 10000 { layers { relu } } }\n  head {"
    ),
    "ten million nodes": CIFAR.replace(b"h4[92]", b"h4[10^7]"),
    # OSError (ENAMETOOLONG) from the hint for a missing include: found by the depth and size
    # mutations of benchmarks/fuzz.py
    "include path too long to look up": b'include "' + b"a/" * 3000 + b'x.wire"\n' + CIFAR,
    "20,000 nested parentheses": CIFAR.replace(
        b"classes 10", b"classes " + b"(" * 20000 + b"1" + b")" * 20000
    ),
    "200,000-digit numeral": CIFAR.replace(b"classes 10", b"classes " + b"7" * 200000),
    "200,000-character name": CIFAR.replace(b"network cifar_tiny", b"network n" + b"a" * 200000),
    "100,000-character include path": b'include "' + b"a" * 100000 + b'.wire"\n' + CIFAR,
    "5,000-digit repeat count": CIFAR.replace(
        b"  use tiny", b"  repeat 1" + b"0" * 5000 + b" { layers { relu } }\n  use tiny"
    ),
}


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regressions(folder: Path, name: str) -> None:
    assert fuzz.check_bytes(REGRESSIONS[name], folder / "case.wire") is None


def test_a_crash_is_reported(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The acceptance rule itself: an exception, or a diagnostic outside the file, is a finding."""
    import wirelang.frontend

    def boom(path: object) -> list:
        raise KeyError("x")

    monkeypatch.setattr(wirelang.frontend, "check_file", boom)
    assert fuzz.check_bytes(CIFAR, folder / "case.wire") == "crash: KeyError: 'x'"


def test_benchmark_report() -> None:
    out = fuzz.run(cases=5, seed=0)
    assert out.cases == 5 and out.passed + out.diagnosed == 5 and not out.failures
    text = fuzz.report(0, out)
    assert "python benchmarks/fuzz.py --cases 5 --seed 0`" in text and "no crash" in text
    assert "| deep_nesting |" in text
