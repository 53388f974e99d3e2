"""A run folder someone damaged, or a run that was killed between two writes: every reader
falls back or refuses with a message, never silently restarts or uses a stale file."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_train import resume, run, weights, write_spec
from typer.testing import CliRunner

from wirelang.cli.commands import app
from wirelang.runs import checkpoint as ckpt
from wirelang.runs.layout import BEST, CHECKPOINTS, LAST, PREV, RunError, read_metrics
from wirelang.runs.load import load_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs with a validation split (so best.pt can be an earlier epoch than last.pt)."""
    root = tmp_path_factory.mktemp("trained")
    spec = write_spec(root, epochs=3, train_extra="")
    run(spec, root / "run")
    return spec, root / "run"


def copy_run(trained, tmp_path):
    spec, src = trained
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return spec, dst


def test_a_stale_best_is_not_used(trained, tmp_path, capsys):
    # killed after last.pt (epoch 3, the new best) but before best.pt: best.pt is an older epoch
    spec, r = copy_run(trained, tmp_path)
    last = ckpt.read(r / CHECKPOINTS / LAST)
    stale = dict(ckpt.read(r / CHECKPOINTS / PREV))  # epoch 2
    last["best"] = {"phase": 1, "epoch": 3, "val_top1": 1.0}
    ckpt.save(r / CHECKPOINTS / LAST, last)
    stale["best"] = {"phase": 1, "epoch": 2, "val_top1": 0.5}
    ckpt.save(r / CHECKPOINTS / BEST, stale)
    payload, path = ckpt.best_checkpoint(r)
    assert path.name == LAST and payload["epoch"] == 3
    loaded = load_run(r)
    for k, v in last["model"].items():
        assert torch.equal(loaded.model.state_dict()[k].cpu(), v), k


def test_best_is_used_when_it_holds_the_best_epoch(trained, tmp_path):
    spec, r = copy_run(trained, tmp_path)
    last = ckpt.read(r / CHECKPOINTS / LAST)
    best = ckpt.read(r / CHECKPOINTS / BEST)
    assert (best["phase"], best["epoch"]) == (last["best"]["phase"], last["best"]["epoch"])
    assert ckpt.best_checkpoint(r)[1].name == (LAST if best["epoch"] == last["epoch"] else BEST)


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped"])
def test_a_damaged_last_falls_back_to_prev_on_resume(trained, tmp_path, damage, capsys):
    spec, r = copy_run(trained, tmp_path)
    path = r / CHECKPOINTS / LAST
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    found = ckpt.resume_point(r, say=print)
    assert found is not None and found[1].name == PREV
    assert "using prev.pt instead" in capsys.readouterr().out
    # and a damaged best.pt never stops eval / inspect: the newest good checkpoint is used
    (r / CHECKPOINTS / BEST).write_bytes(b"")
    assert CliRunner().invoke(app, ["inspect", str(r)]).exit_code == 0
    evaluated = CliRunner().invoke(app, ["eval", str(r)])
    assert evaluated.exit_code == 0 and "top1" in evaluated.output, evaluated.output


def test_no_checkpoint_left_refuses_to_restart_silently(trained, tmp_path):
    spec, r = copy_run(trained, tmp_path)
    (r / CHECKPOINTS / LAST).unlink()
    (r / CHECKPOINTS / PREV).unlink()
    epochs = [row["epoch"] for row in read_metrics(r)]
    with pytest.raises(
        RunError, match="logged 3 epoch\\(s\\) in metrics.jsonl but holds no last.pt or prev.pt"
    ):
        resume(spec, r)
    assert [row["epoch"] for row in read_metrics(r)] == epochs  # nothing appended


def test_a_checkpoint_of_another_network_is_refused(trained, tmp_path):
    spec, r = copy_run(trained, tmp_path)
    for name in (LAST, PREV, BEST):
        payload = ckpt.read(r / CHECKPOINTS / name)
        payload["spec_hash"] = "0123456789abcdef"
        ckpt.save(r / CHECKPOINTS / name, payload)
    with pytest.raises(RunError, match="is a checkpoint of another network"):
        resume(spec, r)
    r2 = CliRunner().invoke(app, ["eval", str(r)])
    assert r2.exit_code == 1 and "is a checkpoint of another network" in r2.output


def test_non_finite_weights_are_never_used(trained, tmp_path, capsys):
    spec, r = copy_run(trained, tmp_path)
    payload = ckpt.read(r / CHECKPOINTS / LAST)
    name = next(k for k, v in payload["model"].items() if v.is_floating_point())
    payload["model"][name] = payload["model"][name].clone().fill_(float("nan"))
    ckpt.save(r / CHECKPOINTS / LAST, payload)  # a valid checksum over NaN weights
    found = ckpt.resume_point(r, say=print)
    assert found is not None and found[1].name == PREV
    assert f"holds non-finite weights ({name})" in capsys.readouterr().out
    assert weights(r / CHECKPOINTS / PREV).keys() == found[0]["model"].keys()


def test_a_checkpoint_whose_weights_diverge_is_set_aside(tmp_path):
    # lr x 1e15 from epoch 2, a checkpoint after every step: step 8 (the first of epoch 2)
    # blows the weights up to ~1e13 with a finite loss, its checkpoint is written, and step 9
    # computes a NaN loss from those weights. That checkpoint is not a good one.
    from test_train import cli

    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    r = cli(
        "train",
        str(spec),
        "--out",
        str(out),
        "--set",
        "schedule=multistep(milestones=[1], gamma=1e15)",
        "--set",
        "checkpoint_steps=1",
    )
    assert r.exit_code == 1, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("error:"))
    assert "loss is nan at step 9" in line
    assert "diverged.pt" in line and "the last good checkpoint is" in line
    diverged = ckpt.read(out / CHECKPOINTS / "diverged.pt")
    assert diverged["step"] == 8
    kept = ckpt.read(out / CHECKPOINTS / LAST)
    assert kept["step"] == 7 and "within" not in kept  # the end of epoch 1
    assert not (out / CHECKPOINTS / PREV).exists()
    # the kept weights give finite outputs; the set-aside ones do not
    model = load_run(out).model
    x = torch.randn(8, 3, 16, 16)
    assert bool(torch.isfinite(model(x)).all())
    model.load_state_dict(diverged["model"])
    assert not bool(torch.isfinite(model(x)).all())


# A trainer that dies (os._exit: no cleanup, as SIGKILL leaves it) just before or just after
# the n-th write that lands an epoch's files: a metrics.jsonl line, or a rename into
# checkpoints/ (last.pt to prev.pt, a finished temporary to last.pt or best.pt). Exit 3: the
# run ended with fewer writes than n.
KILL_DRIVER = """
import os, sys
from wirelang.runs import layout
n, when = int(sys.argv[3]), sys.argv[4]
count = 0
def point(do, counts=lambda *args: True):
    def wrapped(*args, **kwargs):
        global count
        if not counts(*args):
            return do(*args, **kwargs)
        count += 1
        if count == n and when == "before":
            os._exit(9)
        out = do(*args, **kwargs)
        if count == n and when == "after":
            os._exit(9)
        return out
    return wrapped
os.replace = point(os.replace, lambda src, dst: "checkpoints" in str(dst))
layout.MetricsLog.append = point(layout.MetricsLog.append)
from wirelang.train import TrainOptions, train
train(TrainOptions(spec=sys.argv[1], out=sys.argv[2]))
sys.exit(3)
"""


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    spec = write_spec(root, epochs=2)
    run(spec, root / "reference")
    return spec, root / "reference"


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_at_every_write_resumes_to_the_same_run(two_epochs, tmp_path, when):
    import os
    import subprocess
    import sys

    spec, reference = two_epochs
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="1")
    n = 0
    while True:
        n += 1
        out = tmp_path / f"{when}{n}"
        proc = subprocess.run(
            [sys.executable, "-c", KILL_DRIVER, str(spec), str(out), str(n), when],
            env=env,
            capture_output=True,
            timeout=300,
        )
        if proc.returncode == 3:
            break
        assert proc.returncode == 9, proc.stderr.decode()[-2000:]
        killed = sorted(p.name for p in (out / CHECKPOINTS).iterdir())
        resume(spec, out)
        where = f"killed {when} write {n}, leaving {killed}"
        # the same weights, the same metrics lines once each, the same best checkpoint
        assert_same_weights(out / CHECKPOINTS / LAST, reference / CHECKPOINTS / LAST)
        epochs = [(r["phase"], r["epoch"]) for r in read_metrics(out)]
        assert epochs == [(1, 1), (1, 2)], where
        assert read_metrics(out)[-1]["mask_hash"] == read_metrics(reference)[-1]["mask_hash"]
        assert ckpt.find_checkpoint(out).name == ckpt.find_checkpoint(reference).name, where
        best, ref_best = ckpt.best_checkpoint(out)[0], ckpt.best_checkpoint(reference)[0]
        assert best["epoch"] == ref_best["epoch"], where
        assert_same_weights(ckpt.find_checkpoint(out), ckpt.find_checkpoint(reference))
    assert n > 5  # every epoch's line, renames and best.pt were reached


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
