"""`benchmarks/speed.py --quick` runs end to end and prints every ratio line (values are not
checked: they depend on the machine and its load)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_speed_quick_prints_every_ratio():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    for net in ("cifar_tiny", "cifar_tiny_discrete", "mbv1_cifar_dnw"):
        assert any(
            line.startswith(f"ratio train {net}:") and "speedup" in line for line in lines
        ), out.stdout
        assert any(
            line.startswith(f"ratio mask {net}:") and "overhead" in line for line in lines
        ), out.stdout
    assert any(
        line.startswith("ratio inference") and "masked vs dense" in line for line in lines
    ), out.stdout
