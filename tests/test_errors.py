"""Golden error messages: each broken spec in specs/errors/ prints exactly its `.expected` file.

Every sample holds one mistake, so each golden holds exactly one error. Error texts are part of
the interface: after an intended change of wording, regenerate with
`pytest tests/test_errors.py --update-goldens` (or WIRELANG_UPDATE_GOLDENS=1) and read the diff.
The samples run in-process through the CLI (`wirelang check specs/errors/NAME.wire` from the
repository root); one runs as a real subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wirelang.cli.commands import app
from wirelang.frontend import check_file
from wirelang.passes import limits

ROOT = Path(__file__).resolve().parents[1]
ERRORS = ROOT / "specs" / "errors"
SAMPLES = sorted(ERRORS.glob("*.wire"))


def run_check(name: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    monkeypatch.chdir(ROOT)  # paths in messages are relative to the working directory
    monkeypatch.delenv(limits.ENV_VAR, raising=False)
    result = CliRunner().invoke(app, ["check", f"specs/errors/{name}"])
    return result.exit_code, result.stderr


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_golden(sample: Path, monkeypatch: pytest.MonkeyPatch, update_goldens: bool) -> None:
    code, stderr = run_check(sample.name, monkeypatch)
    assert code == 2, stderr
    assert "Traceback" not in stderr
    golden = sample.with_suffix(".expected")
    if update_goldens:
        golden.write_text(stderr, encoding="utf-8")
        return
    assert golden.exists(), f"no golden for {sample.name}: run pytest {__file__} --update-goldens"
    assert stderr == golden.read_text(encoding="utf-8")


def test_samples_cover_the_list() -> None:
    assert len(SAMPLES) >= 30
    stale = sorted(p.name for p in ERRORS.glob("*.expected") if not p.with_suffix(".wire").exists())
    assert not stale, f"goldens without a sample: {stale}"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_one_mistake_one_error(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cascades: a sample's one mistake gives one located error in the file or its includes."""
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(limits.ENV_VAR, raising=False)
    diags = check_file(sample.relative_to(ROOT))
    assert len(diags) == 1, [d.message for d in diags]
    assert diags[0].span.path.startswith("specs/errors/")


def test_subprocess_exit_code_and_no_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wirelang", "check", "specs/errors/static_cycle.wire"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "specs/errors/static_cycle.wire:13:5: error: a static graph must be acyclic"
    )


# ------------------------------------------------------------------------- sizes
def test_ten_million_nodes_check_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv(limits.ENV_VAR, raising=False)
    check_file("specs/errors/huge_graph.wire")  # warm the parser
    start = time.perf_counter()
    diags = check_file("specs/errors/huge_graph.wire")
    # a hang detector, not a speed figure (benchmarks/compile_time.py measures that): a checker
    # that did O(candidates) work would take hours here
    assert time.perf_counter() - start < 20.0
    assert [d.message for d in diags] == [
        "graph `body` has 3.0e14 candidate edges, which would need 1.2 PB of weights"
    ]


def test_limit_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv(limits.ENV_VAR, "2PB")  # 1.2 PB of weights now fits
    assert check_file("specs/errors/huge_graph.wire") == []
    monkeypatch.setenv(limits.ENV_VAR, "1000")  # 1 kB: even the tiny network is too large
    diags = check_file("specs/cifar_tiny.wire")
    assert diags and all("which would need" in d.message for d in diags)
    assert "the limit is 1 kB" in diags[0].hint
    monkeypatch.setenv(limits.ENV_VAR, "lots")
    [diag] = check_file("specs/cifar_tiny.wire")
    assert diag.message == "`WIRELANG_MAX_BYTES=lots` is not a size in bytes"


def test_network_total_over_the_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each layer fits, together they do not: the error is at the network, citing the largest."""
    spec = tmp_path / "wide.wire"
    spec.write_text(
        "network wide {\n  input image(3, 8, 8)\n  classes 10\n"
        "  head { flatten, linear(1000), linear(1000), linear(1000), linear(classes) }\n}\n"
    )
    monkeypatch.setenv(limits.ENV_VAR, "5MB")  # each layer holds at most 4 MB
    [diag] = check_file(spec)
    assert diag.message.startswith("network `wide` has 2,205,010 weights, which would need 8.82 MB")
    assert diag.span.line == 1
    assert diag.related[0][0].line == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", limits.DEFAULT_MAX_BYTES),
        ("64GiB", 64 * 2**30),
        ("500G", 500 * 10**9),
        ("1e12", 10**12),
        ("2 TB", 2 * 10**12),
        ("1.5ki", 1536),
        ("abc", None),
        ("0", None),
        ("-5", None),
    ],
)
def test_max_bytes_parsing(text: str, expected: int | None) -> None:
    assert limits.max_bytes({limits.ENV_VAR: text}) == expected


def test_formatting() -> None:
    assert limits.format_count(992) == "992"
    assert limits.format_count(10**14) == "1.0e14"
    assert limits.format_bytes(4 * 10**14) == "400 TB"
    assert limits.format_bytes(512) == "512 B"
    assert limits.format_bytes(1_640_000_000_000) == "1.64 TB"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1/0", "division by zero"),
        ("10^400", "this power is too large for any size or count"),
    ],
)
def test_set_override_errors_are_located(value: str, message: str) -> None:
    """`--set key=value` reads values as the spec does; a bad one is a spec error, not a crash."""
    from wirelang.diagnostics import SpecError
    from wirelang.train.runs import parse_overrides

    with pytest.raises(SpecError) as err:
        parse_overrides([f"optimizer.lr={value}"])
    [diag] = err.value.diagnostics
    assert diag.message == message
    assert diag.span.path == "--set optimizer.lr"


def test_template_default_sees_earlier_parameters(tmp_path: Path) -> None:
    spec = tmp_path / "defaults.wire"
    spec.write_text(
        "let expand = 4\ntemplate block(c, out = c * expand) {\n  layers {\n    conv(out, k=1)\n  }\n}\n"
        "network n {\n  input image(3, 8, 8)\n  classes 10\n  use block(16)\n"
        "  head {\n    avgpool, linear(classes)\n  }\n}\n"
    )
    from wirelang.frontend import build

    net = build(spec)
    assert net.layers()[0].params["out"] == 64


# ------------------------------------------------------------------------- warnings
FEEDBACK = """network loop {
  input image(4, 8, 8)
  classes 2

  graph body {
    nodes a[4] input op(instancenorm, relu)
    nodes b[4] op(instancenorm, relu)
    nodes z[2] output%s
    edges all(a, b, z, self_loops=true)
    budget 10
    wiring dnw
    semantics discrete(steps=3)
  }

  head { avgpool, linear(classes) }
}
"""


def test_linear_feedback_is_a_located_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("loop.wire").write_text(FEEDBACK % "", encoding="utf-8")
    result = CliRunner().invoke(app, ["check", "loop.wire"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "loop.wire: ok (1 warning)\n"
    assert result.stderr == (
        "loop.wire:8:11: warning: in discrete time, graph `body` feeds the states of `z` back to them through "
        "candidate edges (z -> z) with no normalisation or saturating operator on the way: a recurrence that "
        "nothing bounds, so training can diverge\n"
        "   8 |     nodes z[2] output\n"
        "                 ^^^^\n"
        "loop.wire:9:5: note: edges `z -> z` declared here\n"
        "   9 |     edges all(a, b, z, self_loops=true)\n"
        "           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  = help: give these nodes a normalising operator, e.g. `op(batchnorm)` (an `instancenorm` on output "
        "sets needs a `centercrop` before a global `avgpool`), or leave these edges out of the candidates\n"
    )
    # compile says it too, and still compiles
    result = CliRunner().invoke(app, ["compile", "--json", "loop.wire"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith("loop.wire:8:11: warning: in discrete time")
    # the library raises it as a Python warning that can be filtered
    from wirelang.diagnostics import SpecWarning
    from wirelang.frontend import build

    with pytest.warns(
        SpecWarning, match=r"loop.wire:8:11: in discrete time, graph `body` feeds the states of `z`"
    ):
        build("loop.wire")


def test_no_warning_with_an_operator_or_without_the_loop(tmp_path: Path) -> None:
    (tmp_path / "normed.wire").write_text(FEEDBACK % " op(batchnorm)", encoding="utf-8")
    assert check_file(tmp_path / "normed.wire") == []
    # an instance norm bounds the loop too, but before a global average pool it makes the
    # output constant: that is the only warning left
    (tmp_path / "inormed.wire").write_text(FEEDBACK % " op(instancenorm)", encoding="utf-8")
    [diag] = check_file(tmp_path / "inormed.wire")
    assert "end in an instance norm" in diag.message
    # a bare output set that only receives edges closes no loop
    dag = (FEEDBACK % "").replace(
        "edges all(a, b, z, self_loops=true)",
        "edges all(a, b, self_loops=true)\n    edges forward(b, z)",
    )
    (tmp_path / "dag.wire").write_text(dag, encoding="utf-8")
    assert check_file(tmp_path / "dag.wire") == []
    # a loop through two bare sets is found as well
    two = (
        (FEEDBACK % "")
        .replace("nodes z[2] output", "nodes y[2]\n    nodes z[2] output")
        .replace(
            "edges all(a, b, z, self_loops=true)",
            "edges all(a, b, self_loops=true)\n    edges forward(b, y, z)\n    edges forward(z, y)",
        )
    )
    (tmp_path / "two.wire").write_text(two, encoding="utf-8")
    [diag] = check_file(tmp_path / "two.wire")
    assert diag.severity == "warning"
    assert (
        "feeds the states of `y`, `z` back to them through candidate edges (y -> z -> y)"
        in diag.message
    )
    # ReLU scales with its input: a loop through `op(relu)` sets is no more bounded than a bare one
    relu = FEEDBACK % " op(relu)"
    (tmp_path / "relu.wire").write_text(relu, encoding="utf-8")
    [diag] = check_file(tmp_path / "relu.wire")
    assert "(z -> z)" in diag.message
    # `wiring fixed`: only the listed edges exist; a cycle of nodes among them is named node by node
    fixed = (FEEDBACK % "").replace(
        "budget 10\n    wiring dnw", "wiring fixed {\n      a[0] -> z[0]\n      z[0] -> z[1]\n    }"
    )
    (tmp_path / "fixed.wire").write_text(fixed, encoding="utf-8")
    assert check_file(tmp_path / "fixed.wire") == []
    (tmp_path / "fixed2.wire").write_text(
        fixed.replace("z[0] -> z[1]", "z[0] -> z[1]\n      z[1] -> z[0]"), encoding="utf-8"
    )
    [diag] = check_file(tmp_path / "fixed2.wire")
    assert "through fixed edges (z[0] -> z[1] -> z[0])" in diag.message


# ------------------------------------------------------------------------- several syntax errors
SYNTAX3 = """network t {
  input image(3, 16, 16)
  classes 4

  stem {
    conv(8, k=3, stride=2) batchnorm, relu
  }

  graph body {
    nodes a[8] input op(relu, dwconv(k=3))
    nodes h[12] op(instancenorm relu)
    nodes out[8] output
    edges forward(a, h, out)
    budget 60 edges
    wiring dnw
  }

  head { avgpool, linear(classes) }
}
"""


def test_every_syntax_error_on_its_own_line_is_reported(tmp_path: Path) -> None:
    (tmp_path / "three.wire").write_text(SYNTAX3, encoding="utf-8")
    diags = check_file(tmp_path / "three.wire")
    assert [(d.span.line, d.span.col, d.message) for d in diags] == [
        (6, 28, "unexpected `batchnorm`"),
        (11, 33, "unexpected `relu`"),
        (14, 15, "unexpected `edges`"),
    ]


def test_an_unbalanced_line_stops_the_search(tmp_path: Path) -> None:
    # line 10 leaves a parenthesis open: it is reported, but what follows it could be a cascade
    # of it, so the search stops there (lines 11 and 14 hold mistakes too)
    text = SYNTAX3.replace(
        "nodes a[8] input op(relu, dwconv(k=3))", "nodes a[8] input op(relu, dwconv(k=3)"
    )
    (tmp_path / "open.wire").write_text(text, encoding="utf-8")
    assert [(d.span.line, d.message) for d in check_file(tmp_path / "open.wire")] == [
        (6, "unexpected `batchnorm`"),
        (10, "unexpected end of line"),
    ]
    # a line with a single mistake and correct lines after it: one error, no cascade
    one = (
        SYNTAX3.replace("nodes h[12] op(instancenorm relu)", "nodes h[12] op(instancenorm, relu)")
        .replace("budget 60 edges", "budget 60")
        .replace("conv(8, k=3, stride=2) batchnorm", "conv(8, k=3, stride=2), batchnorm")
    )
    (tmp_path / "one.wire").write_text(
        one.replace("wiring dnw", "wiring dnw dnw"), encoding="utf-8"
    )
    assert [(d.span.line, d.message) for d in check_file(tmp_path / "one.wire")] == [
        (15, "unexpected `dnw`")
    ]
    # a block header without its `{`: every later line would be nested one level too shallow
    headless = SYNTAX3.replace("  graph body {", "  graph body")
    (tmp_path / "headless.wire").write_text(headless, encoding="utf-8")
    assert [d.span.line for d in check_file(tmp_path / "headless.wire")] == [6, 9]
