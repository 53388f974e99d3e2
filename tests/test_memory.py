"""The memory estimate (`wirelang.memory`) and the refusal of networks that cannot fit.

The estimate's weight count is checked against compiled models; its agreement with the real
peak of training is measured by benchmarks/memory_estimate.py (benchmarks/results/memory.md).
"""

from __future__ import annotations

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
    "network `small` needs about 6.14 MB for training with batch 32 (weights 6.02 kB, gradients "
    "2.82 kB, optimizer state 2.82 kB, activations 6.13 MB), but 1 MB is available "
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
