"""The tree is formatted and linted as `pyproject.toml` says (ruff), so diffs stay about meaning."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["wirelang", "tests", "benchmarks", "scripts"]


def ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.fail("ruff is not installed (it is a dev dependency: pip install -e '.[dev]')")
    return subprocess.run(
        [exe, *args, *FOLDERS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_format():
    r = ruff("format", "--check")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_lint():
    r = ruff("check")
    assert r.returncode == 0, r.stdout + r.stderr
