"""Figures of the package's layout, for a before/after note: files, lines, the longest functions,
imports made inside functions, and import cycles.

    python scripts/layout_stats.py                  # this checkout
    python scripts/layout_stats.py /tmp/wl-old      # another one (e.g. a `git worktree` of an
                                                    # older commit), measured by this script

Cycles are found by `tests/test_layers.py` of *this* checkout (its import graph and its cycle
search, pointed at the other tree), so both trees are measured by the same rule. A cycle through
n modules is reported once, not once per module on it.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _rules(root: Path):
    """tests/test_layers.py of this checkout, reading the package under `root`."""
    spec = importlib.util.spec_from_file_location("_layer_rules", HERE / "tests" / "test_layers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.ROOT, mod.PACKAGE = root, root / "wirelang"
    return mod


def _cycles(root: Path) -> list[str]:
    rules = _rules(root)
    distinct: dict[frozenset[str], str] = {}
    for cycle in rules.import_cycles(rules.import_graph()):
        distinct.setdefault(frozenset(cycle.split(" -> ")), cycle)
    return sorted(distinct.values())


def _functions(tree: ast.Module, module: str):
    """(lines, qualified name) of every function and method, nested ones included."""

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                yield child.end_lineno - child.lineno + 1, f"{module}:{name}"
                yield from walk(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def stats(root: Path, top: int = 5) -> dict:
    files = sorted((root / "wirelang").rglob("*.py"))
    lines, functions, lazy = 0, [], 0
    for f in files:
        text = f.read_text(encoding="utf-8")
        lines += len(text.splitlines())
        tree = ast.parse(text)
        module = ".".join(f.relative_to(root).with_suffix("").parts)
        functions.extend(_functions(tree, module))
        lazy += _lazy_imports(tree)
    functions.sort(key=lambda x: (-x[0], x[1]))
    return {
        "root": str(root),
        "files": len(files),
        "lines": lines,
        "longest_functions": [{"name": n, "lines": k} for k, n in functions[:top]],
        "imports_inside_functions": lazy,
        "import_cycles": _cycles(root),
    }


def _lazy_imports(tree: ast.Module) -> int:
    """Import statements whose nearest enclosing scope is a function."""

    def walk(node, in_function: bool) -> int:
        n = 0
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import | ast.ImportFrom):
                n += in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            n += walk(child, inner)
        return n

    return walk(tree, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", nargs="?", type=Path, default=HERE, help="a wirelang checkout")
    parser.add_argument("--top", type=int, default=5, help="how many of the longest functions")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    s = stats(args.root.resolve(), args.top)
    if args.json:
        print(json.dumps(s, indent=2))
        return
    print(f"{s['root']}: {s['files']} files, {s['lines']:,} lines under wirelang/")
    print("longest functions:")
    for f in s["longest_functions"]:
        print(f"  {f['lines']:4d}  {f['name']}")
    print(f"imports inside functions: {s['imports_inside_functions']}")
    cycles = s["import_cycles"]
    print(f"import cycles: {len(cycles)}")
    for c in cycles:
        print(f"  {c}")


if __name__ == "__main__":
    main()
