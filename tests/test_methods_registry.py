"""The wiring-method registry (`wirelang.methods.WIRINGS`) owns every property of a method.

The table below is the registry written out: changing a method's property means changing it
here too, a visible decision. The source scan makes sure no other module decides by a method's
name (`method == "fixed"`, `method in ("lottery_one_shot", "fine_tune")`) instead of asking the
registry.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import wirelang
from wirelang import methods

PROPERTIES = (
    "pools",
    "dense",
    "straight_through",
    "mask_fixed_at_start",
    "edges_listed",
    "trains_complete",
    "anneals",
    "regularizer",
    "stochastic_mask",
    "second_phase",
)

# method: (pools, dense, straight_through, mask_fixed_at_start, edges_listed, trains_complete,
#          anneals, regularizer, stochastic_mask, second_phase)
TABLE = {
    "dnw": (True, False, True, False, False, False, False, None, False, None),
    "dnw_no_update": (True, False, False, False, False, False, False, None, False, None),
    "random": (False, False, False, True, False, False, False, None, False, None),
    "complete": (False, True, False, False, False, True, False, None, False, None),
    "targeted_dropout": (True, False, False, False, False, False, False, None, True, None),
    "l1_anneal": (False, False, False, False, False, False, True, "l1", False, None),
    "fixed": (False, False, False, True, True, False, False, None, False, None),
    "lottery_one_shot": (True, False, False, False, False, True, False, None, False, "rewind"),
    "fine_tune": (True, False, False, False, False, True, False, None, False, "continue"),
}


def test_the_table_lists_every_property_field():
    base = {f.name for f in dataclasses.fields(methods.MethodSpec)}
    own = [f.name for f in dataclasses.fields(methods.WiringSpec) if f.name not in base]
    assert tuple(own) == PROPERTIES


@pytest.mark.parametrize("name", sorted(TABLE))
def test_method_properties(name):
    spec = methods.WIRINGS[name]
    assert dict(zip(PROPERTIES, TABLE[name], strict=True)) == {
        p: getattr(spec, p) for p in PROPERTIES
    }
    assert spec.two_phase == (TABLE[name][-1] is not None)


def test_every_registered_method_is_in_the_table():
    assert sorted(methods.WIRINGS) == sorted(TABLE)


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"edges_listed": True}, "a listed mask is fixed at the start"),
        ({"dense": True}, "a dense wiring trains complete in one phase"),
        (
            {"dense": True, "trains_complete": True, "second_phase": "rewind"},
            "a dense wiring trains complete in one phase",
        ),
        ({"second_phase": "continue"}, "a second phase follows a complete first phase"),
    ],
)
def test_inconsistent_properties_are_refused(fields, error):
    with pytest.raises(ValueError, match=f"^x: {error}$"):
        methods.WiringSpec("x", (), "", **fields)


def test_ranks_square():
    wiring = methods.new_wiring
    assert methods.ranks_square(wiring("dnw", rank="square"))
    assert not methods.ranks_square(wiring("dnw", rank="candidates"))
    assert not methods.ranks_square(wiring("dnw"))  # the default
    assert not methods.ranks_square(wiring("random", seed=3))  # no `rank` parameter at all


# Where a method's name may be written as a literal and compared: the registry itself, and the
# parser, whose `wiring fixed { ... }` is syntax.
ALLOWED = ("methods.py", "syntax/")


def _strings(node: ast.AST) -> list[str]:
    """The string constants a comparison operand is or holds (in tuples, lists, sets, dicts)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [s for e in node.elts for s in _strings(e)]
    if isinstance(node, ast.Dict):
        return [s for e in [*node.keys, *node.values] if e is not None for s in _strings(e)]
    return []


def method_name_comparisons(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name), in line order, for each comparison (`==`, `!=`, `in`, `not in`, `match`
    cases) or set operation (`found & {...}`) of something with a literal that is a wiring
    method's name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.MatchValue):
            operands = [node.value]
        elif isinstance(node, ast.BinOp) and isinstance(
            node.op, ast.BitAnd | ast.BitOr | ast.Sub | ast.BitXor
        ):
            operands = [node.left, node.right]
        else:
            continue
        found += [(node.lineno, s) for o in operands for s in _strings(o) if s in names]
    return sorted(found)


def test_the_scan_finds_comparisons():
    names = {"dnw", "fixed", "fine_tune"}
    source = (
        "a = m == 'dnw'\n"
        "b = m in ('x', 'fine_tune')\n"
        "c = f'{[n for n in ms if n != \"fixed\"]}'\n"
        "d = w == {('dnw', ())}\n"
        "match m:\n    case 'fixed':\n        pass\n"
        "e = {w.method for w in ws} & {'fine_tune', 'y'}\n"
        "f = m == 'dnwx' or m == DEFAULT or {'dnw': 1}.get(m) or g(method='dnw')\n"
    )
    assert method_name_comparisons(source, names) == [
        (1, "dnw"),
        (2, "fine_tune"),
        (3, "fixed"),
        (4, "dnw"),
        (6, "fixed"),
        (8, "fine_tune"),
    ]


def test_no_module_compares_a_method_name():
    root = Path(wirelang.__file__).parent
    names = set(methods.WIRINGS)
    offences = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(ALLOWED):
            continue
        for line, name in method_name_comparisons(path.read_text(), names):
            offences.append(f"wirelang/{rel}:{line} compares with {name!r}")
    assert not offences, "ask methods.WIRINGS[m].<property> instead:\n" + "\n".join(offences)
