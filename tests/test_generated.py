"""`generated/<name>/` holds `wirelang compile --out` for every shipped spec and must be current.

Regenerate with `WIRELANG_UPDATE_GOLDENS=1 pytest tests/test_generated.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wirelang.export.artifacts import render
from wirelang.frontend import build

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.wire"))
UPDATE = os.environ.get("WIRELANG_UPDATE_GOLDENS") == "1"


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_generated_artifacts_are_current(spec, monkeypatch):
    monkeypatch.chdir(ROOT)  # spans are relative to the working directory, as for the CLI
    files = render(build(spec.relative_to(ROOT)))
    folder = ROOT / "generated" / spec.stem
    if UPDATE:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.name not in files:
                old.unlink()
        for name, text in files.items():
            (folder / name).write_text(text, encoding="utf-8")
    assert folder.is_dir(), f"generated/{spec.stem} is missing: run with WIRELANG_UPDATE_GOLDENS=1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for name, text in files.items():
        assert (folder / name).read_text(encoding="utf-8") == text, (
            f"generated/{spec.stem}/{name} is stale"
        )


def test_artifacts_hold_no_absolute_paths_or_times(tmp_path):
    files = render(build(ROOT / "specs" / "cifar_tiny.wire"))
    for text in files.values():
        assert str(ROOT) not in text and "/tmp" not in text


@pytest.mark.parametrize("name", ["cifar_tiny", "cifar_tiny_discrete", "mbv1_dnw_small_x15"])
def test_standalone_module_equals_the_compiled_one(name):
    import torch

    from wirelang.backend.api import compile_network
    from wirelang.export.compact import plan_network
    from wirelang.export.standalone import instantiate

    net = build(ROOT / "specs" / f"{name}.wire")
    model = compile_network(net).eval()
    standalone = instantiate(plan_network(net, model))
    assert "wirelang" not in type(standalone).__module__
    x = torch.randn(2, net.input.channels, net.input.height, net.input.width)
    with torch.no_grad():
        assert torch.allclose(standalone(x), model(x), atol=1e-5, rtol=1e-4)
