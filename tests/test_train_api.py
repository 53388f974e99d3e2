"""`wirelang.train` from Python on your own torch datasets: the run folder, checks before it is
created, loading and resuming; per-step metrics.csv; --device."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

import wirelang
from wirelang.backend.api import compile_network
from wirelang.cli.commands import app
from wirelang.frontend import build
from wirelang.runs import checkpoint as ckpt
from wirelang.runs.layout import STEP_METRICS, read_metrics
from wirelang.train import RunError
from wirelang.train.metrics import STEP_COLUMNS, read_step_rows

SPEC = """\
network t {
  input image(3, 16, 16)
  classes 2

  stem {
    conv(8, k=3, stride=2), instancenorm, relu
  }

  graph body {
    nodes a[8] input op(relu, dwconv(k=3))
    nodes h[12] op(instancenorm, relu, dwconv(k=3))
    nodes out[8] output
    edges forward(a, h, out)
    budget 60
    wiring dnw
    semantics static
  }

  head {
    avgpool, linear(classes)
  }

  train {
    batch 8
    epochs 2
    optimizer sgd(lr=0.05, momentum=0.9)
    seed 3
  }
}
"""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec(folder: Path) -> Path:
    path = folder / "tiny.wire"
    path.write_text(SPEC)
    return path


def images(n: int, seed: int, classes: int = 2, shape=(3, 16, 16)) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(
        torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)
    )


def test_train_load_and_resume_from_python(tmp_path):
    train_set, val_set = images(40, 0), images(16, 1)
    out = tmp_path / "run"
    result = wirelang.train(
        spec(tmp_path), train_data=train_set, val_data=val_set, out=out, epochs=2, verbose=False
    )
    assert result.run_dir == out
    assert {p.name for p in out.iterdir()} >= {
        "spec.wire",
        "config.json",
        "metrics.jsonl",
        "checkpoints",
        STEP_METRICS,
    }
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2] and result.final == records[-1]
    assert records[-1]["test_top1"] is None  # no test_data: no test figures
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["data"]["name"] == "python"
    assert config["python_data"]["train"] == {"type": "TensorDataset", "items": 40}

    # the run loads as a model whose logits are the best checkpoint's
    loaded = wirelang.load(out)
    reference = compile_network(build(out / "spec.wire"))
    reference.load_state_dict(ckpt.best_checkpoint(out)[0]["model"])
    x = val_set.tensors[0][:5]
    with torch.no_grad():
        assert torch.allclose(loaded(x), reference.eval()(x), atol=1e-6)

    # a crash after epoch 1 (last.pt of epoch 1 back in place), then resume with the same data:
    # the same weights as the run that never stopped
    final = ckpt.read(out / "checkpoints" / "last.pt")["model"]
    (out / "checkpoints" / "last.pt").write_bytes((out / "checkpoints" / "prev.pt").read_bytes())
    (out / "metrics.jsonl").write_text(json.dumps(records[0]) + "\n")
    again = wirelang.train(resume=out, train_data=train_set, val_data=val_set, verbose=False)
    resumed = ckpt.read(out / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(final[k], resumed[k]) for k in final)
    assert again.final["epoch"] == 2 and len(read_metrics(out)) == 2


def test_a_dataloader_gives_its_batch_size(tmp_path):
    loader = DataLoader(images(24, 0), batch_size=12, shuffle=True)
    result = wirelang.train(
        spec(tmp_path), train_data=loader, out=tmp_path / "r", epochs=1, verbose=False
    )
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["train"]["batch"] == 12 and result.final["step"] == 2
    assert result.final["val_top1"] is None and result.final["best_epoch"] == 1


def test_settings_by_name_and_from_the_ir(tmp_path):
    net = wirelang.check(spec(tmp_path))
    wirelang.train(
        net,
        train_data=images(16, 0),
        out=tmp_path / "r",
        epochs=1,
        optimizer={"lr": 0.01},
        schedule="cosine",
        verbose=False,
    )
    train = json.loads((tmp_path / "r" / "config.json").read_text())["train"]
    assert train["optimizer"] == {**train["optimizer"], "name": "sgd", "lr": 0.01, "momentum": 0.9}
    assert train["schedule"]["name"] == "cosine"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            images(16, 0, shape=(1, 16, 16)),
            "train_data: images are 1x16x16 but the network's input is",
        ),
        (
            images(16, 0, classes=5),
            "train_data: labels must be 0 to 1 (the network declares `classes 2`), found",
        ),
        (
            TensorDataset(
                torch.zeros(16, 3, 16, 16, dtype=torch.uint8), torch.zeros(16, dtype=torch.long)
            ),
            "train_data[0]: the image must be a float tensor",
        ),
        (images(4, 0), "batch 8 is larger than the training set (4 items)"),
    ],
)
def test_bad_data_is_refused_before_the_run_folder_exists(tmp_path, data, message):
    out = tmp_path / "run"
    with pytest.raises(RunError) as err:
        wirelang.train(spec(tmp_path), train_data=data, out=out, verbose=False)
    assert message in str(err.value) and err.value.exit_code == 2
    assert not out.exists()


def test_resume_with_other_data_is_refused(tmp_path):
    out = tmp_path / "run"
    wirelang.train(spec(tmp_path), train_data=images(16, 0), out=out, epochs=1, verbose=False)
    with pytest.raises(
        RunError, match="was trained with train_data of 16 items; this train_data has 24"
    ):
        wirelang.train(resume=out, train_data=images(24, 0), verbose=False)
    r = CliRunner().invoke(app, ["eval", str(out)])
    assert r.exit_code == 1 and "trained on datasets passed from Python" in r.output


# ---------------------------------------------------------------------------- metrics.csv
def test_step_rows_and_resume_without_duplicates(tmp_path):
    data = images(32, 0)  # 4 steps per epoch
    out = tmp_path / "run"
    wirelang.train(
        spec(tmp_path),
        train_data=data,
        out=out,
        epochs=2,
        log_every=3,
        checkpoint_steps=2,
        verbose=False,
    )
    text = (out / STEP_METRICS).read_text()
    assert text.splitlines()[0] == ",".join(STEP_COLUMNS)
    rows = read_step_rows(out)
    # every 3rd optimizer step, and each epoch's last
    assert [(r["epoch"], r["step"]) for r in rows] == [(1, 3), (1, 4), (2, 6), (2, 8)]
    records = read_metrics(out)
    assert rows[-1]["lr"] == records[-1]["lr"] and all(r["img_s"] > 0 for r in rows)
    # the rows of an epoch cover its batches: their image-weighted loss is the epoch's
    for epoch in (1, 2):
        mine = [r for r in rows if r["epoch"] == epoch]
        steps = [mine[0]["step"] - 4 * (epoch - 1)] + [
            b["step"] - a["step"] for a, b in zip(mine, mine[1:], strict=False)
        ]
        loss = sum(r["loss"] * s for r, s in zip(mine, steps, strict=True)) / 4
        assert loss == pytest.approx(records[epoch - 1]["train_loss"], rel=1e-9)
    # resumed from the mid-epoch checkpoint of epoch 2 (step 6): rows past it are not repeated
    (out / "checkpoints" / "last.pt").write_bytes((out / "checkpoints" / "prev.pt").read_bytes())
    assert ckpt.read(out / "checkpoints" / "last.pt")["step"] == 6
    wirelang.train(resume=out, train_data=data, verbose=False)
    again = read_step_rows(out)
    assert [(r["epoch"], r["step"]) for r in again] == [(1, 3), (1, 4), (2, 6), (2, 8)]
    assert [r["loss"] for r in again] == [r["loss"] for r in rows]


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorboard is installed here")
    r = CliRunner().invoke(
        app,
        ["train", str(spec(tmp_path)), "--out", str(tmp_path / "r"), "--set", "tensorboard=true"],
    )
    assert r.exit_code == 2
    assert (
        "tensorboard is on but the tensorboard package is not installed: pip install 'wirelang[tensorboard]'"
        in r.output
    )
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- --device
def test_device_flag(tmp_path):
    s = str(spec(tmp_path))
    if not torch.cuda.is_available():
        r = CliRunner().invoke(app, ["train", s, "--device", "cuda", "--out", str(tmp_path / "c")])
        assert (
            r.exit_code == 2 and "--device cuda: no CUDA device is available to torch" in r.output
        )
        assert not (tmp_path / "c").exists()
    r = CliRunner().invoke(app, ["train", s, "--device", "tpu"])
    assert r.exit_code == 2 and "--device takes cpu, cuda or cuda:N, not 'tpu'" in r.output
    r = CliRunner().invoke(app, ["train", s, "--device", "cpu", "--gpus", "2"])
    assert r.exit_code == 2 and "--device cpu contradicts --gpus 2" in r.output
    out = tmp_path / "r"
    r = CliRunner().invoke(
        app,
        [
            "train",
            s,
            "--device",
            "cpu",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--set",
            "data=synthetic(size=16)",
        ],
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["device"] == "cpu"
    r = CliRunner().invoke(app, ["eval", str(out), "--device", "cpu", "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["device"] == "cpu"


# ---------------------------------------------------------------------------- DDP
def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", CI="1")  # CI: plain progress lines
    r = subprocess.run(
        [sys.executable, "-m", "wirelang", "train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def _progress(stdout: str) -> list[str]:
    """The progress lines without their timing (img/s, eta)."""
    return [
        re.sub(r"\s+[\d,.]+ img/s.*", "", line) for line in stdout.splitlines() if " step " in line
    ]


def test_two_processes_log_every_rank(tmp_path):
    """--procs 2: metrics.csv and the progress lines hold both ranks' batches (rank 0 writes),
    so they equal a one-process run's up to rounding (instance norm only: no batch statistics)."""
    path = spec(tmp_path)
    common = ["--set", "log_every=1", "--set", "data=synthetic(size=64, val=0)", "--epochs", "1"]
    one = _run_cli(str(path), "--out", str(tmp_path / "one"), *common)
    two = _run_cli(str(path), "--procs", "2", "--out", str(tmp_path / "two"), *common)
    rows1, rows2 = read_step_rows(tmp_path / "one"), read_step_rows(tmp_path / "two")
    assert [r["step"] for r in rows2] == [1, 2, 3, 4, 5, 6, 7, 8]  # once each: rank 0 only
    # Two ranks sum the gradient in another order, so the weights differ by rounding from step 2
    # on, and an image whose two best logits are that close can change its prediction: top-1 may
    # differ by one image of a row's 8 (the loss, a mean of 8, stays within 1e-4).
    flips = 0
    for a, b in zip(rows1, rows2, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["lr"] == a["lr"]
        assert abs(b["top1"] - a["top1"]) in (0.0, pytest.approx(1 / 8))
        flips += b["top1"] != a["top1"]
    assert flips <= 1
    lines1, lines2 = _progress(one.stdout), _progress(two.stdout)
    assert len(lines2) == 4 and len(lines1) == len(lines2)
    for n, (a, b) in enumerate(zip(lines1, lines2, strict=True), start=1):
        loss_a, loss_b = (float(re.search(r"loss ([\d.]+)", t).group(1)) for t in (a, b))
        assert abs(loss_a - loss_b) <= 2e-4
        top_a, top_b = (float(re.search(r"top1 +([\d.]+)%", t).group(1)) for t in (a, b))
        assert abs(top_a - top_b) <= 100 / (2 * 8 * n) + 0.005  # one image of those seen so far
