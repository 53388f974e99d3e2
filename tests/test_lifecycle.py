"""A run's life from the command line: a failed start is retried in place, `--resume RUN`
needs nothing else, `eval --data-root` finds data that moved, `--threads` and `-h`."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from test_data import write_idx_dataset
from typer.testing import CliRunner

from wirelang.cli.commands import app
from wirelang.runs.layout import CONFIG, read_metrics

SPEC = textwrap.dedent("""\
    network m {
      input image(1, 28, 28)
      classes 10
      stem {
        conv(4, k=3, stride=4)
      }
      graph g {
        nodes a[4] input op(instancenorm, relu, dwconv(k=3))
        nodes h[6] op(instancenorm, relu, dwconv(k=3))
        nodes o[5] output
        edges forward(a, h, o)
        budget 20
      }
      head {
        avgpool, linear(classes)
      }
      train {
        data fashion_mnist(val=6)
        batch 8
        epochs 1
        optimizer sgd(lr=0.05)
        seed 1
      }
    }
    """)


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "m.wire"
    path.write_text(SPEC)
    return path


def test_a_failed_start_is_retried_in_place_then_resumed_from_the_run_alone(tmp_path, spec):
    run, data = tmp_path / "R", tmp_path / "data"
    r = cli("train", spec, "--out", run, "--data-root", tmp_path / "missing")
    assert r.exit_code == 1 and "fashion" in r.output.lower()
    write_idx_dataset(data, n_train=40, n_test=10)
    r = cli("train", spec, "--out", run, "--data-root", data, "--threads", "1")
    assert r.exit_code == 0, r.output
    assert "threads: 1" in r.output
    assert json.loads((run / CONFIG).read_text())["threads"] == 1
    assert [row["epoch"] for row in read_metrics(run)] == [1]
    r = cli("train", "--resume", run)  # no spec: the run's own spec.wire
    assert r.exit_code == 0, r.output
    assert "is finished" in r.output
    # a finished run is not a failed start: it is never overwritten
    r = cli("train", spec, "--out", run, "--data-root", data)
    assert r.exit_code == 2 and "already exists and is not empty" in r.output


def test_eval_finds_data_that_moved(tmp_path, spec):
    run, data = tmp_path / "R", tmp_path / "data"
    write_idx_dataset(data, n_train=40, n_test=10)
    assert cli("train", spec, "--out", run, "--data-root", data).exit_code == 0
    moved = tmp_path / "elsewhere"
    shutil.move(data, moved)
    assert cli("eval", run, "--split", "test").exit_code == 1
    r = cli("eval", run, "--split", "test", "--data-root", moved, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["items"] == 10


@pytest.mark.parametrize(
    "command", [[], ["check"], ["compile"], ["train"], ["eval"], ["inspect"], ["export"]]
)
def test_short_help(command):
    r = cli(*command, "-h")
    assert r.exit_code == 0 and "Usage: " in r.output


def test_threads_must_be_positive(spec):
    r = cli("train", spec, "--threads", "0")
    assert r.exit_code == 2 and "--threads takes a count >= 1" in r.output


def test_piped_tables_keep_every_column():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [sys.executable, "-m", "wirelang", "compile", "specs/cifar_tiny.wire"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "candidates" in r.stdout and "semantics" in r.stdout and "254,960" in r.stdout
    assert "…" not in r.stdout and "..." not in r.stdout


def test_omp_num_threads_is_the_default_thread_count(monkeypatch):
    # A user who sets OMP_NUM_THREADS (two jobs sharing the cores) gets that many threads, not
    # the machine's cores; without it, the usable cores.
    from wirelang.runs.layout import default_threads, usable_cores

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    for unset in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", unset)
        assert default_threads() == usable_cores()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == usable_cores()
