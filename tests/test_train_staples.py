"""timm's training staples as train settings: gradient accumulation, clipping, a weight average
(EMA); each checked against a hand computation. Tiny runs: instance norm only, so a batch's
figures do not depend on how it is split into micro-batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import wirelang
from wirelang.backend.api import compile_network
from wirelang.cli.commands import app
from wirelang.frontend import build, check_file
from wirelang.runs import checkpoint as ckpt
from wirelang.runs.layout import read_metrics
from wirelang.train import TrainOptions, train
from wirelang.train.optim import WeightAverage, averaged_keys
from wirelang.train.progress import Progress

SPEC = """\
network t {
  input image(3, 16, 16)
  classes 4

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
    data synthetic(size=SIZE, augment=false, val=0)
    batch 16
    epochs 1
    optimizer sgd(lr=0.1, momentum=0.9)
    schedule cosine
    seed 7
    EXTRA
  }
}
"""


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec(folder: Path, size: int = 32, extra: str = "") -> Path:
    path = folder / "t.wire"
    path.write_text(SPEC.replace("SIZE", str(size)).replace("EXTRA", extra))
    return path


def run(spec_path: Path, out: Path, *overrides: str):
    return train(
        TrainOptions(
            spec=spec_path, out=out, overrides=list(overrides), progress=Progress(enabled=False)
        ),
        say=lambda _: None,
    )


def last(out: Path) -> dict:
    return ckpt.read(out / "checkpoints" / "last.pt")


def test_two_batches_of_8_accumulated_equal_one_batch_of_16(tmp_path):
    s = spec(tmp_path, size=32)  # two optimizer steps either way
    run(s, tmp_path / "one")
    run(s, tmp_path / "acc", "batch=8", "accumulate=2")
    one, acc = last(tmp_path / "one"), last(tmp_path / "acc")
    assert one["step"] == acc["step"] == 2 and acc["scheduler"]["step"] == 2
    for key, value in one["model"].items():
        assert torch.allclose(value, acc["model"][key], atol=1e-6, rtol=1e-5), key
    a, b = read_metrics(tmp_path / "one")[0], read_metrics(tmp_path / "acc")[0]
    assert a["lr"] == b["lr"] and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert a["mask_hash"] == b["mask_hash"]


def test_accumulation_drops_batches_that_do_not_fill_a_step(tmp_path):
    s = spec(tmp_path, size=40)  # 5 batches of 8: 2 steps of 2, the fifth batch unused
    run(s, tmp_path / "r", "batch=8", "accumulate=2")
    assert last(tmp_path / "r")["step"] == 2


def test_clipping_bounds_the_update(tmp_path):
    # one step of plain SGD: the weights move by lr x the clipped gradient, whose norm is <= 0.01
    s = spec(tmp_path, size=16)
    plain = "optimizer=sgd(lr=1.0, momentum=0)"
    run(s, tmp_path / "free", plain, "schedule=constant")
    run(s, tmp_path / "clip", plain, "schedule=constant", "clip_grad=0.01")
    model = compile_network(build(s), seed=7)
    start = {k: v.detach().clone() for k, v in model.named_parameters()}  # not the buffers

    def moved(out: Path) -> float:
        weights = last(out)["model"]
        return float(
            torch.sqrt(
                sum(
                    ((weights[k] - start[k]) ** 2).sum()
                    for k in start
                    if start[k].is_floating_point()
                )
            )
        )

    assert moved(tmp_path / "free") > 0.03  # the bound is active
    assert moved(tmp_path / "clip") == pytest.approx(0.01, rel=1e-4)


def test_the_weight_average_is_the_hand_computed_one(tmp_path):
    # one step per epoch (batch 16 of 16), two epochs: ema1 = d w0 + (1-d) w1, ema2 = d ema1 + (1-d) w2
    s = spec(tmp_path, size=16)
    d = 0.75
    out = tmp_path / "ema"
    run(s, out, "epochs=2", "ema=0.75", "data=synthetic(size=16, augment=false, val=0)")
    run(s, tmp_path / "plain", "epochs=2", "data=synthetic(size=16, augment=false, val=0)")
    model = compile_network(build(s), seed=7)
    w0, averaged = model.state_dict(), averaged_keys(model)
    assert averaged == {name for name, _ in model.named_parameters()}  # no batch norm here
    first = ckpt.read(out / "checkpoints" / "prev.pt")
    second = last(out)
    # the average does not change training: the trained weights equal a run without it
    plain = last(tmp_path / "plain")["model"]
    for key in plain:
        assert torch.equal(second["train_model"][key], plain[key]), key
    for key, w in w0.items():
        if key not in averaged:  # masks, training progress: copied
            assert torch.equal(second["model"][key], second["train_model"][key])
            continue
        ema1 = d * w + (1 - d) * first["train_model"][key]
        ema2 = d * ema1 + (1 - d) * second["train_model"][key]
        assert torch.allclose(first["model"][key], ema1, atol=1e-6), key
        assert torch.allclose(second["model"][key], ema2, atol=1e-6), key
    records = read_metrics(out)
    assert records[-1]["best_by"] == "ema_val_top1" and "ema_test_top1" in records[-1]
    # wirelang.load hands out the average (the checkpoint's `model`)
    loaded = wirelang.load(out).state_dict()
    best = ckpt.best_checkpoint(out)[0]["model"]
    assert all(torch.equal(loaded[k], best[k]) for k in best)


def test_weight_average_update():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightAverage(model, 0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model[1].num_batches_tracked += 3
    model[1].running_mean += 2.0
    ema.update(model)
    now = model.state_dict()
    assert torch.allclose(ema.state["0.weight"], 0.9 * before["0.weight"] + 0.1 * now["0.weight"])
    # a counter is the model's own, not averaged
    assert int(ema.state_dict(model)["1.num_batches_tracked"]) == 3
    assert torch.allclose(
        ema.state["1.running_mean"], 0.9 * before["1.running_mean"] + 0.1 * now["1.running_mean"]
    )
    with ema.swapped_into(model):
        assert torch.equal(model[0].weight, ema.state["0.weight"])
    assert torch.equal(model[0].weight, now["0.weight"])


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("accumulate 0", "`accumulate` must be at least 1, found 0"),
        ("clip_grad -1", "`clip_grad` must be at least 0.0, found -1"),
        ("ema 1", "`ema` must be below 1.0, found 1"),
        ("log_every 0", "`log_every` must be at least 1, found 0"),
    ],
)
def test_bad_staples_are_located_errors(tmp_path, setting, message):
    path = spec(tmp_path, extra=setting)
    diagnostics = check_file(path)
    assert [d.message for d in diagnostics] == [message]
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if setting in t)
    assert diagnostics[0].span.line == line


def test_set_overrides_a_staple(tmp_path):
    r = CliRunner().invoke(
        app, ["train", str(spec(tmp_path)), "--set", "accumulate=0", "--out", str(tmp_path / "r")]
    )
    assert (
        r.exit_code == 2
        and "--set accumulate: `accumulate` must be at least 1, found 0" in r.output
    )
    r = CliRunner().invoke(
        app,
        ["train", str(spec(tmp_path)), "--set", "clip_grad=0.5", "--set", "ema=0.9", "--dry-run"],
    )
    assert r.exit_code == 0, r.output
    assert '"clip_grad": 0.5' in r.output and '"ema": 0.9' in r.output
