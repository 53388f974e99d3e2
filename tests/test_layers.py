"""Layers import only downwards, with no cycles, and checking a spec never imports torch.

    lang (torch-free: syntax, IR, passes, counts)  <-  data, model (backend)  <-  runs
      <-  train, export  <-  cli  <-  the package's public API

Every import of every module counts, including those inside functions: a lazy import hides a
dependency from the reader, not from this test.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "wirelang"

# (layer, rank, packages or modules): a module belongs to the layer naming it or a package above it
LAYERS: list[tuple[str, int, tuple[str, ...]]] = [
    ("api", 5, ("wirelang.__main__",)),
    ("cli", 4, ("wirelang.cli",)),
    ("train", 3, ("wirelang.train",)),
    ("export", 3, ("wirelang.export",)),
    ("runs", 2, ("wirelang.runs",)),
    ("model", 1, ("wirelang.backend",)),
    ("data", 1, ("wirelang.data",)),
    (
        "lang",
        0,
        (
            "wirelang.version",
            "wirelang.diagnostics",
            "wirelang.syntax",
            "wirelang.ir",
            "wirelang.passes",
            "wirelang.ops",
            "wirelang.methods",
            "wirelang.cost",
            "wirelang.memory",
            "wirelang.fmt",
            "wirelang.frontend",
            "wirelang.train_config",
            "wirelang.report",
        ),
    ),
]


def layer_of(module: str) -> tuple[str, int]:
    if module == "wirelang":
        return ("api", 5)
    for name, rank, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return (name, rank)
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(target: str) -> str:
        while target and target not in mods:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for t in map(resolve, targets):
                # importing one's own parent package is how Python reaches a sibling module
                if t and t != name and not name.startswith(t + "."):
                    edges.add(t)
        graph[name] = edges
    return graph


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_layers_import_only_downwards():
    wrong = []
    for src, targets in import_graph().items():
        src_layer, src_rank = layer_of(src)
        for t in sorted(targets):
            t_layer, t_rank = layer_of(t)
            if t_layer != src_layer and t_rank >= src_rank:
                wrong.append(f"{src} ({src_layer}) imports {t} ({t_layer})")
    assert wrong == []


def import_cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every module that reaches itself, as `a -> b -> a` (one path per start; a cycle through
    n modules is listed from each of them). scripts/layout_stats.py counts these too."""
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return cycles


def test_no_import_cycles():
    assert import_cycles(import_graph()) == []


def test_the_rule_test_sees_a_lazy_upward_import(tmp_path, monkeypatch):
    # the checker itself: an import inside a function in the lang layer is an upward import
    fake = tmp_path / "wirelang"
    (fake / "backend").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "backend" / "__init__.py").write_text("")
    (fake / "backend" / "api.py").write_text("")
    (fake / "cost.py").write_text("def f():\n    from wirelang.backend.api import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(
        AssertionError, match="wirelang.cost \\(lang\\) imports wirelang.backend.api"
    ):
        test_layers_import_only_downwards()


@pytest.mark.parametrize("argv", [["check", "SPECS"], ["check", "specs/errors/unknown_init.wire"]])
def test_check_never_imports_torch_or_typer(argv):
    specs = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.wire"))
    args = [a for x in argv for a in (specs if x == "SPECS" else [x])]
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: sys.stderr.write('LOADED ' + ' '.join(m for m in ('torch', 'typer') "
        "if m in sys.modules) + '\\n'))\n"
        f"sys.argv = ['wirelang', *{args!r}]\n"
        "from wirelang.cli import main\n"
        "main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=300,
    )
    assert r.returncode in (0, 2), r.stderr
    assert r.stderr.rstrip().splitlines()[-1] == "LOADED", r.stderr[-2000:]
    if argv[1] == "SPECS":
        assert r.returncode == 0 and r.stdout.count(": ok") == len(specs)


def test_the_cycle_search_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(import_cycles(graph)) == [
        "a -> b -> c -> a",
        "b -> c -> a -> b",
        "c -> a -> b -> c",
    ]
