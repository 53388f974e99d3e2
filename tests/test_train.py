"""Training on one CPU process: run directory, metrics, checkpoints, resume, errors, two phases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import wirelang
from wirelang.backend.api import compile_network
from wirelang.backend.masks import topk_mask
from wirelang.cli.commands import app
from wirelang.frontend import build
from wirelang.runs import checkpoint as ckpt
from wirelang.runs.layout import read_metrics
from wirelang.train import TrainOptions, train
from wirelang.train.loop import rewind
from wirelang.train.metrics import REQUIRED
from wirelang.train.progress import Progress
from wirelang.train.runs import RunError

ROOT = Path(__file__).resolve().parents[1]


def write_spec(
    folder: Path, wiring: str = "dnw", train_extra: str = "", size: int = 256, epochs: int = 2
) -> Path:
    """A tiny network without batch norm (DDP then equals one process exactly, up to rounding)."""
    path = folder / "t.wire"
    path.write_text(
        textwrap.dedent(f"""\
    network t {{
      input image(3, 16, 16)
      classes 4

      stem {{
        conv(8, k=3, stride=2), instancenorm, relu
      }}

      graph body {{
        nodes a[8] input op(relu, dwconv(k=3))
        nodes h[12] op(instancenorm, relu, dwconv(k=3))
        nodes out[8] output
        edges forward(a, h, out)
        budget 60
        wiring {wiring}
        semantics static
      }}

      head {{
        avgpool, linear(classes)
      }}

      train {{
        data synthetic(size={size})
        batch 32
        epochs {epochs}
        optimizer sgd(lr=0.05, momentum=0.9)
        seed 5
        {train_extra}
      }}
    }}
    """)
    )
    return path


def run(spec: Path, out: Path, **kwargs):
    # One thread, as the subprocesses these runs are compared with (OMP_NUM_THREADS=1): the
    # trainer sets its own thread count, and bit-exact comparisons need the same summation order.
    kwargs.setdefault("threads", 1)
    return train(
        TrainOptions(spec=spec, out=out, progress=Progress(enabled=True, fancy=False), **kwargs)
    )


def resume(spec: Path, out: Path):
    return train(
        TrainOptions(spec=spec, resume=out, threads=1, progress=Progress(enabled=True, fancy=False))
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.read(path)["model"]


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(autouse=True)
def one_thread():
    # Bit-exact comparisons with a subprocess need the same summation order: one thread each.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


# ---------------------------------------------------------------------------- a run
def test_run_directory_metrics_and_load(tmp_path):
    spec = write_spec(tmp_path, epochs=1)
    result = run(spec, tmp_path / "run")
    out = tmp_path / "run"
    assert {p.name for p in out.iterdir()} == {
        "spec.wire",
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "checkpoints",
    }
    records = read_metrics(out)
    assert len(records) == 1
    for key in (*REQUIRED, "test_top1", "test_top5"):
        assert key in records[-1], key
    assert records[0]["edges_swapped"].keys() == {"body"}
    config = json.loads((out / "config.json").read_text())
    assert (
        config["world_size"] == 1
        and config["train"]["epochs"] == 1
        and "language_version" in config
    )
    # the self-contained spec builds to the same network
    from wirelang.ir.meaning import spec_hash

    assert spec_hash(build(out / "spec.wire")) == config["spec_hash"] == records[0]["spec_hash"]
    payload = ckpt.read(out / "checkpoints" / "best.pt")
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "rng",
        "sampler",
        "epoch",
        "phase",
        "seed",
        "spec_hash",
        "mask_hash",
        "wirelang_version",
        "language_version",
    ):
        assert key in payload, key
    loaded = wirelang.load(out)
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), result.model.eval()(x))
    assert loaded.mask_hash() == records[-1]["mask_hash"]
    r = cli("eval", str(out), "--split", "test", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["top1"] == pytest.approx(
        records[-1]["test_top1"]
    )


def test_dry_run_prints_resolved_config(tmp_path):
    spec = write_spec(tmp_path)
    r = cli(
        "train",
        str(spec),
        "--dry-run",
        "--set",
        "optimizer.lr=0.01",
        "--epochs",
        "3",
        "--out",
        str(tmp_path / "x"),
    )
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert shown["train"]["optimizer"]["lr"] == 0.01 and shown["train"]["epochs"] == 3
    assert shown["overrides"] == {"optimizer.lr": 0.01, "epochs": 3}
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("optimizer.lrr=0.1", "did you mean `lr`"),
        ("epoch=3", "did you mean `epochs`"),
        ("lr=0.1", "--set lr: unknown training setting `lr` (did you mean `optimizer.lr`?)"),
        ('root="/data"', "(did you mean `data.root`?)"),
        ("epochs=-1", "`epochs`"),
        ("optimizer=sgdd(lr=0.1)", "optimizer"),
        ("data=cifar10", "cifar10"),
    ],
)
def test_set_errors_exit_2(tmp_path, setting, expected):
    spec = write_spec(tmp_path)
    r = cli("train", str(spec), "--set", setting, "--out", str(tmp_path / "x"))
    assert r.exit_code == 2, r.output
    assert expected in r.output
    assert "Traceback" not in r.output


def test_usage_errors(tmp_path):
    spec = write_spec(tmp_path)
    r = cli("train", str(spec), "--gpus", "4")
    assert (
        r.exit_code == 1 and "CUDA device" in r.output and len(r.output.strip().splitlines()) == 1
    )
    r = cli("train", str(spec), "--batch-size", "33", "--procs", "2")
    assert r.exit_code == 2 and "does not split evenly" in r.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    r = cli("train", str(spec), "--out", str(tmp_path / "busy"))
    assert r.exit_code == 2 and "not empty" in r.output


# ---------------------------------------------------------------------------- resume
def test_corrupt_last_falls_back_to_prev_and_resumes_exactly(tmp_path, capsys):
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    run(spec, out)
    final = weights(out / "checkpoints" / "last.pt")
    # resuming a finished run does nothing and succeeds
    r = cli("train", str(spec), "--resume", str(out))
    assert r.exit_code == 0 and "finished" in r.output
    # a truncated last.pt: resume from prev.pt (epoch 1) and redo epoch 2, bit for bit
    last = out / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    capsys.readouterr()
    resume(spec, out)
    said = capsys.readouterr().out
    assert "last.pt is unreadable" in said and "using prev.pt" in said
    assert_same(weights(last), final)
    records = read_metrics(out)
    assert [(r["phase"], r["epoch"]) for r in records] == [(1, 1), (1, 2)]


def test_checksum_detects_a_flipped_byte(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save(path, {"model": {"w": torch.arange(1000.0)}, "epoch": 1})
    data = bytearray(path.read_bytes())
    i = data.find(torch.arange(1000.0).numpy().tobytes()[400:408])
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CorruptCheckpoint, match="checksum"):
        ckpt.read(path)


def test_write_failure_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save(path, {"epoch": 1})

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "fsync", full_disk)
    with pytest.raises(RunError, match="No space left on device; the previous checkpoint is kept"):
        ckpt.save(path, {"epoch": 2}, keep_previous=True)
    assert ckpt.read(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_kill_and_resume_is_bit_exact(tmp_path):
    spec = write_spec(tmp_path, size=1024, epochs=4)
    killed = tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS="1", CI="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wirelang", "train", str(spec), "--out", str(killed)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    first = killed / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert not ckpt.read(ckpt.resume_point(killed)[1]).get("finished")
    resume(spec, killed)
    reference = tmp_path / "reference"
    run(spec, reference)
    assert_same(
        weights(killed / "checkpoints" / "last.pt"), weights(reference / "checkpoints" / "last.pt")
    )
    assert read_metrics(killed)[-1]["mask_hash"] == read_metrics(reference)[-1]["mask_hash"]


def test_resume_refuses_a_changed_spec(tmp_path):
    spec = write_spec(tmp_path, epochs=1)
    run(spec, tmp_path / "run")
    write_spec(tmp_path, epochs=1, wiring="random")
    r = cli("train", str(spec), "--resume", str(tmp_path / "run"))
    assert r.exit_code == 2 and "spec_hash" in r.output


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    # lr 0.05 for epoch 1, then 0.05 * 1e15: the weights overflow within a few steps
    r = cli(
        "train",
        str(spec),
        "--out",
        str(out),
        "--set",
        "schedule=multistep(milestones=[1], gamma=1e15)",
    )
    assert r.exit_code == 1, r.output
    line = [x for x in r.output.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "at step" in line[0] and "last good checkpoint" in line[0]
    assert ckpt.read(out / "checkpoints" / "last.pt")["epoch"] == 1
    assert [rec["epoch"] for rec in read_metrics(out)] == [1]


# ---------------------------------------------------------------------------- two phases
def test_rewind_restores_initial_weights_and_keeps_masks():
    net = build_text_spec("lottery_one_shot")
    model = compile_network(net, seed=1)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.freeze_topk()
    frozen = [m.clone() for m in model.masks()["body"].active()]
    rewind(model, initial)
    mask = model.masks()["body"]
    assert all(torch.equal(a, b) for a, b in zip(mask.active(), frozen, strict=True))
    for k, v in model.state_dict().items():
        if not k.rsplit(".", 1)[-1].startswith(("fixed_", "phase")):
            assert torch.equal(v, initial[k]), k


def build_text_spec(wiring: str):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return build(write_spec(Path(folder), wiring=wiring))


def frozen_topk(state: dict[str, torch.Tensor], k: int) -> list[torch.Tensor]:
    ws = [state["gm.body.wiring.w_0"], state["gm.body.wiring.w_1"]]
    flat = topk_mask(torch.cat([w.abs().flatten() for w in ws]), k)
    return [flat[: ws[0].numel()].view_as(ws[0]), flat[ws[0].numel() :].view_as(ws[1])]


def test_lottery_rewinds_then_retrains_on_the_fixed_mask(tmp_path):
    # phase two with a negligible lr: its final weights are the rewound (initial) ones
    spec = write_spec(
        tmp_path,
        wiring="lottery_one_shot",
        epochs=1,
        train_extra="phase2 {\n epochs 1\n optimizer sgd(lr=1e-12, momentum=0)\n }",
    )
    out = tmp_path / "run"
    run(spec, out)
    records = read_metrics(out)
    assert [(r["phase"], r["epoch"]) for r in records] == [(1, 1), (2, 1)]
    phase1 = weights(out / "checkpoints" / "phase1_last.pt")
    final = weights(out / "checkpoints" / "last.pt")
    initial = compile_network(build(spec), seed=5).state_dict()
    kept = frozen_topk(phase1, 60)
    assert int(final["gm.body.wiring.mask.phase"]) == 2
    for i, keep in enumerate(kept):
        assert torch.equal(final[f"gm.body.wiring.mask.fixed_{i}"], keep)
        w = f"gm.body.wiring.w_{i}"
        assert torch.allclose(final[w][keep], initial[w][keep], atol=1e-6)
        assert not torch.allclose(phase1[w][keep], initial[w][keep], atol=1e-6)


@pytest.mark.parametrize("phase2_epochs", [1, 2])
def test_two_phase_resume_is_exact(tmp_path, phase2_epochs):
    # prev.pt is the end of phase one (1: the freeze and rewind are redone on resume) or the
    # middle of phase two (2: the fixed masks and the optimizer come from the checkpoint)
    spec = write_spec(
        tmp_path,
        wiring="lottery_one_shot",
        epochs=1,
        train_extra=f"phase2 {{\n epochs {phase2_epochs}\n }}",
    )
    out = tmp_path / "run"
    run(spec, out)
    final = weights(out / "checkpoints" / "last.pt")
    (out / "checkpoints" / "last.pt").unlink()
    resume(spec, out)
    assert_same(weights(out / "checkpoints" / "last.pt"), final)
    assert [(r["phase"], r["epoch"]) for r in read_metrics(out)] == [(1, 1)] + [
        (2, e) for e in range(1, phase2_epochs + 1)
    ]


def test_fine_tune_continues_with_lr_0_01(tmp_path):
    spec = write_spec(tmp_path, wiring="fine_tune", epochs=1)
    out = tmp_path / "run"
    run(spec, out)
    records = read_metrics(out)
    assert [(r["phase"], r["lr"]) for r in records] == [(1, 0.05), (2, 0.01)]
    phase1 = weights(out / "checkpoints" / "phase1_last.pt")
    final = weights(out / "checkpoints" / "last.pt")
    for i, keep in enumerate(frozen_topk(phase1, 60)):
        assert torch.equal(final[f"gm.body.wiring.mask.fixed_{i}"], keep)
    # phase two starts from phase one's weights: they move by a fine-tuning step, not a rewind
    initial = compile_network(build(spec), seed=5).state_dict()
    w = "gm.body.wiring.w_0"
    assert (final[w] - phase1[w]).abs().mean() < (final[w] - initial[w]).abs().mean()


# ---------------------------------------------------------------------------- sweep
def test_sweep_table(tmp_path):
    spec = write_spec(tmp_path, epochs=1, size=128)
    r = cli("sweep", str(spec), "--seed-list", "1,2", "--out", str(tmp_path / "sw"))
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["stats"]["test_top1"]["n"] == 2
    assert "+-" in (tmp_path / "sw" / "sweep.md").read_text()
    last = [read_metrics(tmp_path / "sw" / f"seed{s}")[-1] for s in (1, 2)]
    assert [m["seed"] for m in last] == [1, 2]
    import statistics

    tests = [100 * m["test_top1"] for m in last]
    stats = summary["stats"]["test_top1"]
    assert stats["values"] == tests
    assert stats["mean"] == pytest.approx(statistics.fmean(tests))
    assert stats["std"] == pytest.approx(statistics.stdev(tests))

    # the same command again: both runs are finished, the table is the same
    before = (tmp_path / "sw" / "sweep.md").read_text()
    r = cli("sweep", str(spec), "--seed-list", "1,2", "--out", str(tmp_path / "sw"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "sw" / "sweep.md").read_text() == before
    # other settings into the same folder are refused, not mixed into the table
    r = cli(
        "sweep",
        str(spec),
        "--seed-list",
        "1,2",
        "--epochs",
        "2",
        "--set",
        "optimizer.lr=0.07",
        "--out",
        str(tmp_path / "sw"),
    )
    assert r.exit_code == 2
    assert r.stderr.strip() == (
        f"error: {tmp_path / 'sw' / 'seed1'} was started with other settings (epochs, optimizer "
        "differ); give the same spec and options to resume it, or another --out"
    )


def test_sweep_of_one_seed_and_a_failed_seed(tmp_path, monkeypatch):
    spec = write_spec(tmp_path, epochs=1, size=128)
    r = cli("sweep", str(spec), "--seeds", "1", "--out", str(tmp_path / "one"))
    assert r.exit_code == 0, r.output
    assert "(1 seed)" in (tmp_path / "one" / "sweep.md").read_text()
    assert "+-" not in (tmp_path / "one" / "sweep.md").read_text()

    # seed 1 fails at run time: seed 0 and 2 still run, the table holds them, the exit is 1
    import wirelang.train as wt

    real = wt.train

    def flaky(opts, say=print):
        if opts.seed == 1 and not opts.dry_run:
            raise RunError("loss is nan at step 3")
        return real(opts, say=say)

    monkeypatch.setattr(wt, "train", flaky)
    r = cli("sweep", str(spec), "--seeds", "3", "--out", str(tmp_path / "three"))
    assert r.exit_code == 1
    assert r.stderr.strip().endswith(
        f"error: 1 of 3 seeds failed (1); the table in {tmp_path / 'three' / 'sweep.md'} "
        "holds the others"
    )
    summary = json.loads((tmp_path / "three" / "sweep.json").read_text())
    assert summary["seeds"] == [0, 2] and summary["failed"] == {"1": "loss is nan at step 3"}


def test_quickstart_spec_checks():
    r = cli("check", str(ROOT / "specs" / "quickstart.wire"))
    assert r.exit_code == 0, r.output


# ---------------------------------------------------------------------------- pieces
def test_lr_schedules_per_step():
    from wirelang.train.optim import Phase, lr_factor
    from wirelang.train_config import OptimizerConfig, ScheduleConfig

    sgd = OptimizerConfig(name="sgd", lr=0.1)
    multistep = Phase(
        1, 4, sgd, ScheduleConfig(name="multistep", milestones=[2, 3], gamma=0.1), warmup=1
    )
    assert [lr_factor(s, 10, multistep) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]  # warm-up, per step
    assert lr_factor(19, 10, multistep) == 1.0 and lr_factor(20, 10, multistep) == pytest.approx(
        0.1
    )
    assert lr_factor(39, 10, multistep) == pytest.approx(0.01)
    cosine = Phase(1, 2, sgd, ScheduleConfig(name="cosine", min_lr=0.01), warmup=0)
    assert lr_factor(0, 10, cosine) == 1.0 and lr_factor(10, 10, cosine) == pytest.approx(0.55)
    assert lr_factor(20, 10, cosine) == pytest.approx(0.1)  # min_lr / lr


def test_continuous_runs_report_nfe(tmp_path):
    path = write_spec(tmp_path, epochs=1, size=64)
    text = path.read_text().replace(
        "edges forward(a, h, out)", "edges all(a, h, out, self_loops=true)"
    )
    path.write_text(
        text.replace("semantics static", "semantics continuous(time=1, solver=rk4, step_size=0.5)")
    )
    run(path, tmp_path / "run")
    record = read_metrics(tmp_path / "run")[-1]
    assert record["nfe"] == {"body": 8}  # rk4: 4 evaluations per step, 2 steps


def test_progress_bars_in_a_terminal(capsys):
    bar = Progress(enabled=True, fancy=True)
    bar.start_epoch("epoch 1/1", 3)
    for i in range(3):
        bar.step(i + 1, 1.0, 0.5, 64 * (i + 1))
    bar.end_epoch(
        {
            "train_loss": 1.0,
            "train_top1": 0.5,
            "val_loss": 0.9,
            "val_top1": 0.6,
            "val_top5": 0.9,
            "lr": 0.1,
            "time_s": 1.0,
            "edges_swapped": {"body": 3},
        }
    )
    bar.close()
    assert "val loss 0.9000 top1 60.00%" in capsys.readouterr().out


def test_without_a_validation_split_the_best_checkpoint_is_the_last(tmp_path):
    spec = write_spec(tmp_path, epochs=3, size=128)
    run(spec, tmp_path / "r", overrides=["data=synthetic(size=128, val=0)"])
    records = read_metrics(tmp_path / "r")
    assert [r["val_top1"] for r in records] == [None, None, None]
    assert records[-1]["best_epoch"] == 3 and records[-1]["best_val_top1"] is None
    assert_same(
        weights(tmp_path / "r" / "checkpoints" / "best.pt"),
        weights(tmp_path / "r" / "checkpoints" / "last.pt"),
    )


def test_resume_inside_an_epoch_is_exact(tmp_path, monkeypatch):
    """checkpoint_steps: last.pt every 3 steps; a crash at epoch 2, step 7 resumes after step 6 and
    ends bit-identical to a run that never stopped (and never wrote a mid-epoch checkpoint)."""
    # targeted dropout draws random numbers every step: the random state must be resumed too
    spec = write_spec(
        tmp_path, wiring="targeted_dropout(rho=0.5)", epochs=2, size=256
    )  # 8 steps per epoch
    fast = "optimizer=sgd(lr=0.5, momentum=0.9)"  # so that edges swap in epoch 2 before the cut
    run(spec, tmp_path / "plain", overrides=[fast])

    import wirelang.train.loop as loop

    calls = {"n": 0}
    real = loop.all_sum

    def crash_at_epoch2_step4(d, values):
        calls["n"] += 1  # once per step, and once at each epoch end
        if calls["n"] == 8 + 1 + 7:
            raise KeyboardInterrupt
        return real(d, values)

    monkeypatch.setattr(loop, "all_sum", crash_at_epoch2_step4)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", overrides=[fast, "checkpoint_steps=3"])
    monkeypatch.setattr(loop, "all_sum", real)
    saved = ckpt.read(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["within"]["epoch"], saved["within"]["step"]) == (1, 2, 6)
    assert len(read_metrics(tmp_path / "cut")) == 1

    resume(spec, tmp_path / "cut")
    assert_same(
        weights(tmp_path / "plain" / "checkpoints" / "last.pt"),
        weights(tmp_path / "cut" / "checkpoints" / "last.pt"),
    )
    plain, cut = (read_metrics(tmp_path / r) for r in ("plain", "cut"))
    assert (
        sum(plain[1]["edges_swapped"].values()) > 0
    )  # edges moved in epoch 2: counted across the cut too
    drop = ("time_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in plain] == [
        {k: v for k, v in r.items() if k not in drop} for r in cut
    ]
