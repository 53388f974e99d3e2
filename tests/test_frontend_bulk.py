"""The front end's fast path for bulk lines (`wirelang/syntax/fast.py`) against lark alone.

`parse_text` reads whole `let` lines and fixed-edge lines with regular expressions and grafts
them into lark's tree of the rest; `_parse_file` is lark alone. They must agree on every text:
the same tree with the same spans, or the same errors. Speed is measured in
`benchmarks/compile_time.py`, never here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fmt import exprs, specs

from wirelang.diagnostics import SpecError
from wirelang.frontend import build
from wirelang.syntax import fast
from wirelang.syntax.parse import MAX_TOKENS, MAX_TREE_DEPTH, _parse_file, parse_text

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted(
    p
    for folder in ("specs", "benchmarks/specs")
    for p in (ROOT / folder).rglob("*.wire")
    if "runs" not in p.parts
)


def outcome(parse, text: str, path: str = "t.wire"):
    """The tree, or the errors as (place, message, hint, related)."""
    try:
        return "tree", parse(text, path)
    except SpecError as err:
        return "errors", [(d.span, d.message, d.hint, d.related) for d in err.diagnostics]


def assert_same(text: str) -> None:
    assert outcome(parse_text, text) == outcome(_parse_file, text)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_spec_reads_the_same(path):
    assert_same(path.read_bytes().decode("utf-8", errors="replace"))


NET = """network n {{
  input image(3, 8, 8)
  classes 10
{body}
}}
"""


@pytest.mark.parametrize(
    "body",
    [
        # lets where they may stand, with spans that count parentheses, percent arguments,
        # keywords, strings, functions and right-associative powers
        '  let a = (1 + 2) * (3)\n  let b = -2 ^ -a ^ 2 / f(x = 3%, [1, (2)], "s")',
        "  let t = true\n  let true_x = [false, [], f()]\n  let u = ((a))",
        "  repeat 2 as i {\n    let c = i * 2\n    graph g {\n      let d = c\n    }\n  }",
        # lets where they may not stand: lark reports them exactly as before
        "  stem {\n    let a = 1\n  }",
        "  train {\n    let a = 1\n  }",
        "  residual {\n    branch {\n      let a = 1\n    }\n  }",
        "  graph g {\n    wiring fixed {\n      let a = 1\n    }\n  }",
        # fixed edges inside and outside `wiring fixed`, members with blanks, odd spacing
        "  graph g {\n    nodes a[4] input\n    nodes h[2] * 2\n    edges a -> h.1\n"
        "    wiring fixed {\n      a [ 0 ]->h . 1[1 ,0]\n\n      a[3] -> h.1[0]\n    }\n  }",
        "  graph g {\n    a[0] -> b[1]\n  }",
        "  a[0] -> b[1]",
        "  stem {\n    a[0] -> b[1]\n  }",
        # what the fast path leaves to lark: continuations, comments, escapes, bad text
        "  let a = 1 + \\\n    2\n  let b = 3 # three",
        '  let s = "a\\"b"\n  let e = 1 +\n  let f = 2 3',
        "  let n = 0000000000000000000000000000000001\n  let q = 1e999",
        "  graph g {\n    wiring fixed {\n      a[1234567890123456789] -> b[0]\n    }\n  }",
        "  let deep = " + "(" * 200 + "1" + ")" * 200,
        "  let sum = " + " + ".join(["1"] * 170),
        "  let neg = " + "-" * 170 + "1",
    ],
)
def test_tricky_lines_read_the_same(body):
    assert_same(NET.format(body=body))


def test_top_level_lets_keep_the_file_span():
    for text in ("let a = 1\n", "  let a = 1", "# c\n  let a = 2 * (3)\n\nnetwork n {\n}\n"):
        assert_same(text)


def test_a_claimed_let_too_deep_for_its_block_is_refused_like_lark():
    # 100 nested repeats, then a let whose expression (50 levels) alone could be claimed:
    # together deeper than lark's limit (start, network, the repeats, the let, the sum)
    nest = 100
    lines = [f"{'  ' * i}repeat 1 {{" for i in range(nest)]
    lines.append("  " * nest + "let a = " + " + ".join(["1"] * 50))
    lines += [f"{'  ' * i}}}" for i in reversed(range(nest))]
    text = "network n {\n" + "\n".join(lines) + "\n}\n"
    assert fast.scan(text, "t.wire", MAX_TOKENS)[1], "the let line is claimed"
    kind, errors = outcome(parse_text, text)
    assert kind == "errors" and f"nested more than {MAX_TREE_DEPTH}" in errors[0][1]
    assert_same(text)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs())
def test_random_specs_read_the_same(text):
    assert_same(text)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    specs(),
    st.integers(0, 200),
    st.one_of(
        exprs().map(lambda e: f"let v = {e}"),
        st.sampled_from(["a[0] -> b[1, 2]", "h.1[3] -> out[0]", "  x [1] -> y.2 [ 4 ]"]),
    ),
)
def test_a_bulk_line_anywhere_reads_the_same(text, at, line):
    """A `let` or an edge dropped between any two lines: valid or not, the same outcome."""
    lines = text.split("\n")
    at = at % (len(lines) + 1)
    assert_same("\n".join([*lines[:at], line, *lines[at:]]))


def frozen_like(sources: int, targets: int, per_source: int, lets: int) -> tuple[str, int]:
    """A spec shaped like a frozen export: `lets` lets, then one static graph
    a[sources] -> b[targets] with `per_source` fixed edges from every source (a deterministic
    spread); and its edge count."""
    lines = []
    for i in range(sources):
        js = sorted({(i * 7 + k * 13) % targets for k in range(per_source)})
        lines.append(f"      a[{i}] -> b[{', '.join(map(str, js))}]")
    count = sum(len(line.split(",")) for line in lines)
    last = f"w{lets - 1}"
    lets_text = "\n".join(f"  let w{i} = w{i - 1} + {i % 7} * 2 - 1" for i in range(1, lets))
    text = f"""network big {{
  input image(3, 8, 8)
  classes 10
  let w0 = 4
{lets_text}
  stem {{
    conv({sources}, k=1)
  }}
  graph g {{
    nodes a[{sources}] input op(batchnorm, relu)
    nodes b[{targets}] output
    edges a -> b
    budget {count}
    wiring fixed {{
{chr(10).join(lines)}
    }}
  }}
  head {{
    avgpool, linear({last} - {last} + classes)
  }}
}}
"""
    return text, count


def test_a_large_frozen_spec_checks(tmp_path):
    text, count = frozen_like(sources=1024, targets=1024, per_source=250, lets=2000)
    assert 1_000_000 < len(text) < 2_000_000
    spec = tmp_path / "big.wire"
    spec.write_text(text)
    net = build(spec)
    (graph,) = net.graphs()
    assert len(graph.wiring.fixed) == count == graph.budget.k
    assert graph.wiring.fixed[0] == ("a", 0, "b", 0)
    assert graph.wiring.fixed[-1][:2] == ("a", 1023)
    assert (graph.wiring.fixed_spans[0].line, graph.wiring.fixed_spans[0].col) == (2013, 7)
    assert net.classes == 10


def test_a_smaller_frozen_spec_reads_as_lark_reads_it():
    text, _ = frozen_like(sources=64, targets=64, per_source=20, lets=100)
    assert_same(text)


def test_every_kind_of_bad_fixed_edge_is_still_reported():
    """Valid fixed edges take a short way through the check; each bad one still gets its error."""
    text = """network n {
  input image(4, 8, 8)
  classes 3
  graph g {
    nodes a[4] input
    nodes b[3] output
    edges a -> b
    budget 5
    wiring fixed {
      a[0] -> b[0, 1]
      a[1] -> c[0]
      a[9] -> b[0]
      a[0] -> b[1]
      b[0] -> a[1]
      a[2] -> b[2]
    }
  }
  head {
    avgpool
  }
}
"""
    kind, errors = outcome(lambda text, path: build(path, text=text), text)
    assert kind == "errors"
    assert [(span.line, message) for span, message, _, _ in errors] == [
        (8, "the budget says 5 edges but `wiring fixed` lists 3"),
        (11, "fixed edge `a[1] -> c[0]`: unknown node set `c`"),
        (12, "fixed edge `a[9] -> b[0]`: index out of range (`a` has 4 nodes, `b` has 3)"),
        (13, "fixed edge `a[0] -> b[1]` is listed twice"),
        (14, "fixed edge `b[0] -> a[1]` is not a candidate edge"),
    ]
