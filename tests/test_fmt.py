"""`wirelang fmt`: exact canonical output, idempotence, and that printing never changes meaning
or drops a comment, on the specs in the repository and on random specs from hypothesis."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirelang.diagnostics import SpecError
from wirelang.fmt import format_file, format_text
from wirelang.syntax import ast
from wirelang.syntax.parse import parse_bytes, parse_text

SPECS = Path(__file__).resolve().parents[1] / "specs"
_SPAN_FIELDS = {
    "span",
    "name_span",
    "key_span",
    "branch_span",
    "shortcut_span",
    "path_spans",
    "allocate_span",
}


def meaning(file: ast.File) -> object:
    """The file as data, minus positions and comments: what formatting must never change."""

    def strip(x: object) -> object:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in _SPAN_FIELDS}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(file.model_dump(exclude={"comments"}))


def check_round_trip(text: str, path: str = "<test>") -> str:
    first = parse_text(text, path)
    out = format_file(first)
    again = parse_text(out, path)
    assert meaning(again) == meaning(first)
    assert [c.text for c in again.comments] == [c.text for c in first.comments]
    assert format_file(again) == out
    return out


# ------------------------------------------------------------------------- exact output
MESSY = """

# header comment

#   second group
include   "lib/x.wire"
include "lib/y.wire"   # why y
let   width=  2*(3+4) - -1
let p = 2^3^-2 + (2^3)^2 - (a-b) - (a - b - c) + (-2)^2 + 2^(3*4)


template empty( ) { }
template stage( cin , cout=cin*2 ) {
  use block(cin, cout) as b1
  use block(cout,cout)
  repeat depth as i { layers { conv(cout, k=3), relu } }
  # end of template
}
network   messy{   # trailing on header
    input image( 3,32 , 32 )
    classes 10

    let d = ( width + 1 ) * 3
    pool shared 5%
  pool other (d*100)%   allocate = erk
    use stage(32, 64) as s1
  stem {  conv(16,k=3,stride=2),batchnorm,relu
    dwconv( k = 3, stride=2 )
      relu()
    repeat 2 as j {
      conv(d), relu   # layer comment
    }
  }
  layers trunk {
    linear(10) }
  graph body {
    # leading
    nodes in[32] input op(instancenorm, relu, dwconv(k=3)) send( sum )
    nodes h1[8], \\
          h2[d*2]*3 hidden op()
    nodes g[4]*(n+1)
    nodes out[10] output

    edges forward(in , h1)
    edges in, h2.1 -> out
    edges dense
    budget 32000
    budget 5%
    budget pooled shared
    budget 0.05*800*800
    wiring dnw
    wiring targeted_dropout( rho=0.95 )
    wiring fixed {
      in[0] -> out[1,2]   # fixed one
      h2.3[4] -> out[5]
    }
    semantics static
    let q = -(a + b) * -c / (x * y)
  }
  residual r {
    after relu
    shortcut {
      conv(64, k=1)
    }
    branch { conv(64), batchnorm }
  }
  residual { branch {
      relu
    } }
  repeat n - 1 as k {
    use stage(64, 64)
  }
  sparse {
    layers conv , linear
    exclude stem.0, head.2
    budget 10%
    wiring dnw
  }
  head { centercrop(2), avgpool, linear(classes) }
  train {
    data cifar10
    lr 0.1     # the peak
    name "run \\"a\\"\\né"
    flag true
    off false
    wd 1e-4
    frac -5%
    list [ 80,120 ]
    phase2 {
      epochs 10
      lr 1%

    }
  }
}  # after network

# at the end

# really the end
"""

MESSY_FORMATTED = """# header comment

#   second group
include "lib/x.wire"
include "lib/y.wire"  # why y
let width = 2 * (3 + 4) - -1
let p = 2 ^ 3 ^ -2 + (2 ^ 3) ^ 2 - (a - b) - (a - b - c) + (-2) ^ 2 + 2 ^ (3 * 4)

template empty() {
}

template stage(cin, cout=cin * 2) {
  use block(cin, cout) as b1
  use block(cout, cout)

  repeat depth as i {
    layers {
      conv(cout, k=3), relu
    }
  }
  # end of template
}

network messy {  # trailing on header
  input image(3, 32, 32)
  classes 10

  let d = (width + 1) * 3
  pool shared 5%
  pool other (d * 100)% allocate=erk
  use stage(32, 64) as s1

  stem {
    conv(16, k=3, stride=2), batchnorm, relu
    dwconv(k=3, stride=2)
    relu()
    repeat 2 as j {
      conv(d), relu  # layer comment
    }
  }

  layers trunk {
    linear(10)
  }

  graph body {
    # leading
    nodes in[32] input op(instancenorm, relu, dwconv(k=3)) send(sum)
    nodes h1[8], h2[d * 2] * 3 hidden op()
    nodes g[4] * (n + 1)
    nodes out[10] output

    edges forward(in, h1)
    edges in, h2.1 -> out
    edges dense
    budget 32000
    budget 5%
    budget pooled shared
    budget 0.05 * 800 * 800
    wiring dnw
    wiring targeted_dropout(rho=0.95)
    wiring fixed {
      in[0] -> out[1, 2]  # fixed one
      h2.3[4] -> out[5]
    }
    semantics static
    let q = -(a + b) * -c / (x * y)
  }

  residual r {
    after relu
    shortcut {
      conv(64, k=1)
    }
    branch {
      conv(64), batchnorm
    }
  }

  residual {
    branch {
      relu
    }
  }

  repeat n - 1 as k {
    use stage(64, 64)
  }

  sparse {
    layers conv, linear
    exclude stem.0, head.2
    budget 10%
    wiring dnw
  }

  head {
    centercrop(2), avgpool, linear(classes)
  }

  train {
    data cifar10
    lr 0.1  # the peak
    name "run \\"a\\"\\né"
    flag true
    off false
    wd 1e-4
    frac -5%
    list [80, 120]
    phase2 {
      epochs 10
      lr 1%
    }
  }
}  # after network

# at the end

# really the end
"""

# Comments around the parts of a residual block (whose `shortcut` has no span: its lines are
# guessed from comment columns), at block ends, and between groups.
COMMENTS = """network z {
  residual {
    branch { relu }   # on branch close
    # before shortcut
    shortcut {   # on shortcut header
      # first in shortcut

      conv(8)  # trailing conv
        # last in shortcut
    }   # on shortcut close
    # before after
    after relu  # on after
    # end of residual
  }   # residual close
  residual { shortcut {
  # in empty shortcut
  }
  }
  stem {
    # only comments

  }
  let x = 1 # t
  # c1

  # c2

  let y = 2
  # at block end, after a blank
}
"""

COMMENTS_FORMATTED = """network z {
  residual {
    branch {
      relu
    }  # on branch close
    # before shortcut
    shortcut {
      # on shortcut header
      # first in shortcut

      conv(8)  # trailing conv
      # last in shortcut
      # on shortcut close
    }
    # before after
    after relu  # on after
    # end of residual
  }  # residual close

  residual {
    # in empty shortcut
    shortcut {
    }
  }

  stem {
    # only comments
  }

  let x = 1  # t
  # c1

  # c2

  let y = 2
  # at block end, after a blank
}
"""


def test_messy_input_prints_canonically() -> None:
    assert format_text(MESSY) == MESSY_FORMATTED
    assert check_round_trip(MESSY) == MESSY_FORMATTED


def test_comments_are_placed_and_kept() -> None:
    assert format_text(COMMENTS) == COMMENTS_FORMATTED
    assert check_round_trip(COMMENTS) == COMMENTS_FORMATTED


# specs/cifar_tiny.wire as first written: the reference for the canonical style.
CIFAR_TINY = """# The paper's static tiny classifier on CIFAR-10: 800 channel nodes, 32,000 learned edges.
network cifar_tiny {
  input image(3, 32, 32)
  classes 10

  stem {
    conv(16, k=3, stride=2), batchnorm, relu
    dwconv(k=3, stride=2)
    conv(32, k=1), batchnorm
  }

  graph body {
    nodes in[32] input op(instancenorm, relu, dwconv(k=3))
    nodes h1[192], h2[192], h3[192], h4[92] op(instancenorm, relu, dwconv(k=3))
    nodes out[100] output
    edges forward(in, h1, h2, h3, h4, out)
    budget 0.05 * 800 * 800
    wiring dnw
    semantics static
  }

  head {
    centercrop(2), avgpool, linear(classes)
  }

  train {
    data cifar10
    batch 512
    epochs 160
    optimizer sgd(lr=0.1, momentum=0.9, weight_decay=1e-4)
    schedule multistep(milestones=[80, 120], gamma=0.1)
    seed 1996
  }
}
"""


def test_canonical_example_is_a_fixed_point() -> None:
    assert format_text(CIFAR_TINY) == CIFAR_TINY


def test_edge_cases() -> None:
    assert format_text("") == ""
    assert format_text("\n\n# only a comment\n\n") == "# only a comment\n"
    assert (
        format_text('include "a"\n\n\nlet x = 1\nlet y = 2')
        == 'include "a"\n\nlet x = 1\nlet y = 2\n'
    )
    tab = format_text('network n {\n train {\n s "a\tb" \n t "é"\n }\n}\n')
    assert 's "a\\tb"' in tab and 't "é"' in tab


# ------------------------------------------------------------------------- spec files
SPEC_FILES = sorted(SPECS.glob("**/*.wire"))


def test_specs_are_found() -> None:
    assert SPEC_FILES


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(SPECS)))
def test_spec_file_formats_stably(path: Path) -> None:
    data = path.read_bytes()
    try:
        parse_bytes(data, str(path))
    except SpecError as err:
        # A spec meant not to parse. Bytes that are not text are refused by `parse_bytes`
        # itself, which is fmt's answer too; text must fail in fmt the same way, not crash.
        try:
            text = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            return
        if "\x00" not in text:
            with pytest.raises(SpecError) as again:
                format_text(text, str(path))
            assert str(again.value) == str(err)
        return
    check_round_trip(data.decode("utf-8").removeprefix("\ufeff"), str(path))


# ------------------------------------------------------------------------- random specs
KEYWORDS = {
    "include",
    "let",
    "template",
    "network",
    "input",
    "classes",
    "stem",
    "head",
    "layers",
    "repeat",
    "as",
    "residual",
    "branch",
    "shortcut",
    "after",
    "use",
    "pool",
    "graph",
    "nodes",
    "hidden",
    "output",
    "op",
    "send",
    "edges",
    "budget",
    "pooled",
    "allocate",
    "wiring",
    "fixed",
    "semantics",
    "sparse",
    "exclude",
    "train",
    "phase2",
    "true",
    "false",
}
# Cheap strategies (from_regex is slow): a letter or `_`, then letters, digits and `_`.
names = st.builds(
    str.__add__,
    st.sampled_from("abcdefghijklmnopqrstuvwxyz_"),
    st.text("abcdefghijklmnopqrstuvwxyz0123456789_", max_size=5),
).filter(lambda s: s not in KEYWORDS)
paths = st.builds(
    lambda head, tails: ".".join([head, *tails]),
    names,
    st.lists(st.sampled_from(["0", "2", "a", "b_1"]), max_size=2),
)
sp = st.sampled_from(["", " ", "  "])
numbers = st.one_of(
    st.integers(0, 1000).map(str), st.sampled_from(["0.5", ".25", "1e-4", "2E+3", "007", "3.0e2"])
)
strings = st.lists(
    st.sampled_from(["a", " ", "\\n", '\\"', "\\\\", "é", "\\t", "x_y", "{", "#"]), max_size=4
).map(lambda parts: '"' + "".join(parts) + '"')


@functools.cache
def pick(*options: str) -> st.SearchStrategy[str]:
    return st.sampled_from(options)


@functools.cache  # one strategy object per depth: building them is slow
@st.composite
def atoms(draw, depth: int) -> str:
    kinds = ["num", "name", "str", "bool"] + (["paren", "list", "func"] if depth > 0 else [])
    kind = draw(pick(*kinds))
    if kind == "num":
        return draw(numbers)
    if kind == "name":
        return draw(names)
    if kind == "str":
        return draw(strings)
    if kind == "bool":
        return draw(pick("true", "false"))
    if kind == "paren":
        return "(" + draw(sp) + draw(exprs(depth - 1)) + draw(sp) + ")"
    if kind == "list":
        return "[" + ", ".join(draw(st.lists(exprs(depth - 1), max_size=3))) + "]"
    return draw(names) + "(" + draw(args(depth - 1)) + ")"


@functools.cache
@st.composite
def exprs(draw, depth: int = 2) -> str:
    """Grammar-directed: sums of products of `-`* power, where power is `atom (^ -* atom)*`,
    so the mix of precedence, unary minus and right-associative `^` comes from the parser."""

    def term() -> str:
        text = "-" * draw(st.integers(0, 2)) + draw(atoms(depth))
        for _ in range(draw(st.integers(0, 2))):
            text += draw(sp) + "^" + draw(sp) + "-" * draw(st.integers(0, 1)) + draw(atoms(depth))
        return text

    text = term()
    for _ in range(draw(st.integers(0, 3))):
        text += draw(sp) + draw(pick("+", "-", "*", "/")) + draw(sp) + term()
    return text


@functools.cache
@st.composite
def values(draw, depth: int = 2) -> str:
    return draw(exprs(depth)) + draw(pick("", "", "%"))


@functools.cache
@st.composite
def args(draw, depth: int = 1) -> str:
    parts = [
        (draw(names) + draw(sp) + "=" + draw(sp) if draw(st.booleans()) else "")
        + draw(values(depth))
        for _ in range(draw(st.integers(0, 3)))
    ]
    return ("," + draw(sp)).join(parts)


@functools.cache
@st.composite
def calls(draw) -> str:
    form = draw(pick("bare", "empty", "args"))
    name = draw(names)
    if form == "bare":
        return name
    return name + "(" + ("" if form == "empty" else draw(args())) + ")"


def call_list(draw, min_size: int = 1) -> str:
    return ("," + draw(sp)).join(draw(calls()) for _ in range(draw(st.integers(min_size, 3))))


def block(draw, head: str, body: list[str]) -> list[str]:
    """`head { body }`, sometimes with the first item on the `{` line or `}` after the last."""
    lines = [head + draw(sp) + "{", *body, "}"]
    if body and not body[0].endswith("\\") and draw(st.booleans()):
        lines[:2] = [lines[0] + " " + lines[1]]
    if len(lines) > 2 and not lines[-2].endswith("\\") and draw(st.booleans()):
        lines[-2:] = [lines[-2] + " }"]
    return lines


def budget_value(draw) -> str:
    form = draw(pick("amount", "percent", "pooled"))
    if form == "pooled":
        return "pooled " + draw(names)
    return draw(exprs(1)) + ("%" if form == "percent" else "")


def set_ref(draw) -> str:
    return draw(names) + (f".{draw(st.integers(0, 9))}" if draw(st.booleans()) else "")


def layer_items(draw, depth: int) -> list[str]:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        if depth > 0 and draw(st.integers(0, 4)) == 0:
            head = f"repeat {draw(exprs(1))}" + (
                f" as {draw(names)}" if draw(st.booleans()) else ""
            )
            lines += block(draw, head, layer_items(draw, depth - 1))
        else:
            lines.append(call_list(draw))
    return lines


def graph_item(draw) -> list[str]:
    kind = draw(pick("nodes", "pattern", "arrow", "budget", "wiring", "fixed", "semantics", "let"))
    if kind == "nodes":
        sets = []
        for _ in range(draw(st.integers(1, 3))):
            count = draw(pick("", "num", "name", "paren"))
            atom = {
                "": "",
                "num": draw(numbers),
                "name": draw(names),
                "paren": f"({draw(exprs(1))})",
            }[count]
            sets.append(
                f"{draw(names)}[{draw(exprs(1))}]"
                + (f"{draw(sp)}*{draw(sp)}{atom}" if atom else "")
            )
        text = "nodes " + ", ".join(sets)
        text += draw(pick("", " input", " hidden", " output"))
        text += f" op({call_list(draw, 0)})" if draw(st.booleans()) else ""
        text += f" send({call_list(draw, 0)})" if draw(st.booleans()) else ""
        if len(sets) > 1 and draw(st.booleans()):  # a line continuation after the first set
            first, rest = text.split(", ", 1)
            return [first + ", \\", "    " + rest]
        return [text]
    if kind == "pattern":
        return ["edges " + draw(calls())]
    if kind == "arrow":
        sides = [", ".join(set_ref(draw) for _ in range(draw(st.integers(1, 3)))) for _ in range(2)]
        return [f"edges {sides[0]} -> {sides[1]}"]
    if kind == "budget":
        return ["budget " + budget_value(draw)]
    if kind == "wiring":
        return ["wiring " + draw(calls())]
    if kind == "fixed":
        edges = []
        for _ in range(draw(st.integers(0, 3))):
            targets = ",".join(
                str(draw(st.integers(0, 99))) for _ in range(draw(st.integers(1, 3)))
            )
            edges.append(
                f"{set_ref(draw)}[{draw(st.integers(0, 99))}] -> {set_ref(draw)}[{targets}]"
            )
        return block(draw, "wiring fixed", edges)
    if kind == "semantics":
        return ["semantics " + draw(calls())]
    return [f"let {draw(names)} ={draw(sp)}{draw(exprs())}"]


def settings_lines(draw) -> list[str]:
    return [f"{draw(names)} {draw(values())}" for _ in range(draw(st.integers(0, 3)))]


def net_items(draw, depth: int) -> list[str]:
    lines: list[str] = []
    # Residuals twice: their `shortcut` has no span, the subtlest case for comment placement.
    kinds = [
        "input",
        "classes",
        "let",
        "pool",
        "use",
        "layers",
        "graph",
        "residual",
        "residual",
        "sparse",
        "train",
    ]
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(pick(*kinds, *(["repeat"] if depth > 0 else [])))
        if kind == "input":
            lines.append(f"input {draw(names)}({draw(args().filter(bool))})")
        elif kind == "classes":
            lines.append("classes " + draw(exprs()))
        elif kind == "let":
            lines.append(f"let {draw(names)} = {draw(exprs())}")
        elif kind == "pool":
            allocate = f" allocate={draw(names)}" if draw(st.booleans()) else ""
            lines.append(f"pool {draw(names)} {budget_value(draw)}{allocate}")
        elif kind == "use":
            lines.append(
                "use " + draw(calls()) + (f" as {draw(names)}" if draw(st.booleans()) else "")
            )
        elif kind == "layers":
            role = draw(pick("stem", "head", "layers"))
            name = f" {draw(names)}" if draw(st.booleans()) else ""
            lines += block(draw, role + name, layer_items(draw, 1))
        elif kind == "graph":
            body = [line for _ in range(draw(st.integers(0, 5))) for line in graph_item(draw)]
            lines += block(draw, "graph" + (f" {draw(names)}" if draw(st.booleans()) else ""), body)
        elif kind == "residual":
            parts = draw(st.permutations(["branch", "shortcut", "after"]))[
                : draw(st.integers(0, 3))
            ]
            body = []
            for part in parts:
                if part == "after":
                    body.append("after " + call_list(draw))
                else:
                    body += block(draw, part, layer_items(draw, 1))
            lines += block(
                draw, "residual" + (f" {draw(names)}" if draw(st.booleans()) else ""), body
            )
        elif kind == "sparse":
            body = []
            for _ in range(draw(st.integers(0, 4))):
                item = draw(pick("layers", "exclude", "budget", "wiring"))
                if item == "layers":
                    body.append(
                        "layers " + ", ".join(draw(st.lists(names, min_size=1, max_size=3)))
                    )
                elif item == "exclude":
                    body.append(
                        "exclude " + ", ".join(draw(st.lists(paths, min_size=1, max_size=3)))
                    )
                elif item == "budget":
                    body.append("budget " + budget_value(draw))
                else:
                    body.append("wiring " + draw(calls()))
            lines += block(draw, "sparse", body)
        elif kind == "train":
            body = settings_lines(draw)
            if draw(st.booleans()):
                body += block(draw, "phase2", settings_lines(draw))
            lines += block(draw, "train", body + settings_lines(draw))
        else:
            head = f"repeat {draw(exprs(1))}" + (
                f" as {draw(names)}" if draw(st.booleans()) else ""
            )
            lines += block(draw, head, net_items(draw, depth - 1))
    return lines


comment_texts = st.text(
    st.characters(codec="utf-8", exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    max_size=8,
)


@st.composite
def specs(draw) -> str:
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(pick("include", "let", "template", "network", "network"))
        if kind == "include":
            lines.append('include "lib/' + draw(names) + '.wire"')
        elif kind == "let":
            lines.append(f"let {draw(names)} = {draw(exprs())}")
        elif kind == "template":
            params = [
                draw(names) + (f"={draw(exprs(1))}" if draw(st.booleans()) else "")
                for _ in range(draw(st.integers(0, 3)))
            ]
            lines += block(draw, f"template {draw(names)}({', '.join(params)})", net_items(draw, 1))
        else:
            lines += block(draw, f"network {draw(names)}", net_items(draw, 1))
    # Messy layout: random indentation, blank lines, comments on their own lines and at line ends
    # (never after a `\`, which would swallow the line continuation).
    out: list[str] = []
    for line in lines:
        for _ in range(draw(st.integers(0, 2)) if not (out and out[-1].endswith("\\")) else 0):
            out.append(
                draw(pick("", " ")) + ("#" + draw(comment_texts) if draw(st.booleans()) else "")
            )
        text = draw(pick("", "  ", "\t", "     ")) + line
        if not line.endswith("\\") and draw(st.integers(0, 3)) == 0:
            text += draw(sp) + "#" + draw(comment_texts)
        out.append(text)
    return "\n".join(out) + draw(pick("", "\n", "\n\n# tail\n"))


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(specs())
def test_random_specs_round_trip(text: str) -> None:
    check_round_trip(text)
