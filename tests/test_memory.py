"""The memory estimate (`wirelang.memory`) and the refusal of networks that cannot fit.

The estimate's weight count is checked against compiled models; its agreement with the real
peak of training is measured by benchmarks/memory_estimate.py (benchmarks/results/memory.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

import wirelang
from wirelang import memory
from wirelang.backend.api import compile_network
from wirelang.cli.commands import app
from wirelang.frontend import build
from wirelang.runs.layout import RunError

SMALL = """\
network small {
  input image(3, 16, 16)
  classes 10
  stem {
    conv(8, k=3), batchnorm, relu
  }
  graph g {
    nodes i[8] input op(batchnorm, relu)
    nodes h[16] op(batchnorm, relu)
    nodes o[8] output op(batchnorm)
    edges forward(i, h, o)
    budget 50%
    wiring dnw
  }
  head {
    avgpool, linear(classes)
  }
  train {
    data synthetic
    batch 32
  }
}
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.wire"
    path.write_text(SMALL)
    return path


@pytest.mark.parametrize("spec", ["quickstart", "cifar_tiny", "fmnist_tiny_discrete"])
def test_stored_weights_equal_the_compiled_model(spec):
    net = build(f"specs/{spec}.wire")
    stored, masked, _ = memory.stored_weights(net)
    model = compile_network(net)
    assert stored == sum(p.numel() for p in model.parameters())
    assert masked == sum(w.numel() for m in model.masks().values() for w in m.weights())


def test_the_estimate_adds_up(small):
    net = build(small)
    stored, masked, largest = memory.stored_weights(net)
    est = memory.estimate(net, batch=32, optimizer="sgd", momentum=0.9)
    assert est.gradients == 4 * stored and est.optimizer == 4 * stored
    assert est.weights == 4 * stored + memory.MASK_BYTES * masked + memory.SCORE_BYTES * largest
    assert memory.estimate(net, 32, "sgd", momentum=0.0).optimizer == 0
    assert memory.estimate(net, 32, "adamw").optimizer == 8 * stored
    assert memory.estimate(net, 32, ema=True).optimizer == 8 * stored
    # activations grow with the batch, and with the steps that keep them for backward
    assert memory.estimate(net, 64).activations == 2 * est.activations
    steps = build_text(
        small, SMALL.replace("wiring dnw", "wiring dnw\n    semantics discrete(steps=5)")
    )
    g, g5 = net.graphs()[0], steps.graphs()[0]
    assert memory.graph_evaluations(g5) == 5
    rest = memory.activations_per_item(net) - memory.graph_activations(g)
    assert memory.activations_per_item(steps) - rest > 4 * (
        memory.graph_activations(g) - 8 * 256 - 8 * 256
    )
    loading = memory.estimate(net, 32, training=False)
    assert (loading.gradients, loading.optimizer, loading.activations) == (0, 0, 0)


def build_text(path, text):
    path.write_text(text)
    return build(path)


def test_available_memory_is_read_from_the_environment(monkeypatch):
    assert memory.available_bytes({memory.AVAILABLE_ENV: "3GiB"}) == (
        3 * 2**30,
        memory.AVAILABLE_ENV,
    )
    found, source = memory.available_bytes({})
    assert found is None or (found > 0 and source)


TRAIN_REFUSAL = (
    "network `small` needs about 6.21 MB for training with batch 32 (weights 6.02 kB, gradients "
    "2.82 kB, optimizer state 2.82 kB, activations 6.13 MB, dataset 71.7 kB), but 1 MB is available "
    "(WIRELANG_MEMORY_AVAILABLE); use a smaller batch (`--batch-size`), fewer steps or smaller "
    "sets, or a machine with more memory"
)
LOAD_REFUSAL = (
    "network `small` needs about 3.14 kB for loading (weights 3.14 kB), but 1 kB is available "
    "(WIRELANG_MEMORY_AVAILABLE); use smaller sets or layers, or a machine with more memory"
)


def test_train_refuses_a_network_that_cannot_fit(small, tmp_path, monkeypatch):
    monkeypatch.setenv(memory.AVAILABLE_ENV, "1MB")
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(small), "--out", str(run)])
    assert r.exit_code == 2, r.output
    assert " ".join(r.output.split()) == f"error: {TRAIN_REFUSAL}"
    assert "Traceback" not in r.output
    assert not run.exists()
    # with the memory it needs, the same command gets past the check (a dry run stops there)
    monkeypatch.setenv(memory.AVAILABLE_ENV, "1GB")
    r = CliRunner().invoke(app, ["train", str(small), "--out", str(run), "--dry-run"])
    assert r.exit_code == 0, r.output


def test_load_refuses_a_network_that_cannot_fit(small, monkeypatch):
    monkeypatch.setenv(memory.AVAILABLE_ENV, "1kB")
    with pytest.raises(RunError) as err:
        wirelang.load(small)
    assert str(err.value) == LOAD_REFUSAL and err.value.exit_code == 2
    monkeypatch.setenv(memory.AVAILABLE_ENV, "1GB")
    assert wirelang.load(small) is not None


# ---------------------------------------------------------------------------- every way to train
def test_the_procs_launcher_refuses_for_all_its_processes(small, tmp_path, monkeypatch):
    monkeypatch.setenv(memory.AVAILABLE_ENV, "6MB")
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(small), "--out", str(run), "--procs", "2"])
    assert r.exit_code == 2, r.output
    # each process holds its own weights, gradients, optimizer state and dataset (twice the
    # one-process figures above), and the activations of half the batch
    assert (
        "needs about 6.3 MB for training in 2 processes with batch 16 each (weights 12 kB, "
        "gradients 5.65 kB, optimizer state 5.65 kB, activations 6.13 MB, dataset 143 kB), "
        "but 6 MB is available" in " ".join(r.output.split())
    )
    assert not run.exists()


def test_each_torchrun_process_refuses_before_joining_the_job(small, tmp_path, monkeypatch):
    # started by torchrun (RANK, WORLD_SIZE set; not by `--procs`): two processes on this
    # machine, so twice the memory of one, checked before the process group is joined
    from wirelang.runs.layout import LAUNCHED_ENV
    from wirelang.train import TrainOptions, train

    monkeypatch.delenv(LAUNCHED_ENV, raising=False)
    for key, value in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv(memory.AVAILABLE_ENV, "6MB")
    run = tmp_path / "run"
    with pytest.raises(RunError) as err:
        train(TrainOptions(spec=small, out=run))
    assert err.value.exit_code == 2
    assert "for training in 2 processes with batch 16 each" in str(err.value)
    assert not run.exists()


def test_training_from_python_refuses_a_network_that_cannot_fit(small, tmp_path, monkeypatch):
    import torch
    from torch.utils.data import TensorDataset

    data = TensorDataset(torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,)))
    monkeypatch.setenv(memory.AVAILABLE_ENV, "1MB")
    run = tmp_path / "run"
    with pytest.raises(RunError) as err:
        wirelang.train(small, train_data=data, out=run, verbose=False)
    # datasets passed from Python are in memory already: not counted again
    assert err.value.exit_code == 2 and str(err.value).startswith(
        "network `small` needs about 6.14 MB for training with batch 32 (weights 6.02 kB, "
        "gradients 2.82 kB, optimizer state 2.82 kB, activations 6.13 MB), but 1 MB"
    )
    assert not run.exists()


def write_idx(path, dims):
    """An IDX file of unsigned bytes with these dimensions, gzipped when its name says so."""
    import gzip

    header = (0x08 << 8 | len(dims)).to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in dims
    )
    body = header + bytes(int(np.prod(dims)))
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)


def test_the_dataset_held_in_memory_is_counted(small, tmp_path, monkeypatch):
    from wirelang.data import build_datasets, dataset_bytes

    # IDX files: the counts in their headers (gzipped or not); the loaded tensors agree
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", (300, 28, 28))
    write_idx(tmp_path / "train-labels-idx1-ubyte", (300,))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", (50, 28, 28))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", (50,))
    counted = dataset_bytes("fashion_mnist", tmp_path)
    assert counted == 350 * (28 * 28 + 8)
    splits = build_datasets("fashion_mnist", tmp_path, val_size=0, augment=False)
    held = [(d.images.nbytes + d.labels.nbytes) for d in (splits.train, splits.test)]
    assert sum(held) == counted
    assert dataset_bytes("fashion_mnist", tmp_path / "missing") == 0  # loading will say so
    # CIFAR: a fixed size, counted before the files are downloaded
    assert dataset_bytes("cifar10", tmp_path / "nothing here") == 60_000 * (3 * 32 * 32 + 8)
    # and the refusal of `wirelang train` names it
    small.write_text(
        SMALL.replace("data synthetic", "data cifar10").replace("(3, 16, 16)", "(3, 32, 32)")
    )
    monkeypatch.setenv(memory.AVAILABLE_ENV, "100MB")
    r = CliRunner().invoke(app, ["train", str(small), "--out", str(tmp_path / "run")])
    assert r.exit_code == 2 and "dataset 185 MB), but 100 MB is available" in r.output.replace(
        "\n", " "
    )
