"""The dense network of the same live size (`wirelang.export.dense`), the compact model's
yardstick in `wirelang export`'s report."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from wirelang.cost import network_cost
from wirelang.export.dense import NoTwin, _build, classifier, dense_twin, narrowed
from wirelang.frontend import build

ROOT = Path(__file__).resolve().parent.parent


def widths(net) -> list[int]:
    """Every set's size and every layer's `out`, in network order."""
    out = []
    for item in net.items:
        if hasattr(item, "sets"):
            out += [s.size for s in item.sets]
        else:
            layers = [item] if hasattr(item, "params") else item.branch + item.shortcut + item.after
            out += [x.params["out"] for x in layers if "out" in x.params]
    return out


@pytest.mark.parametrize("spec", ["quickstart", "cifar_tiny", "mbv1_dnw"])
def test_the_twin_is_the_network_at_one_width_with_complete_graphs(spec):
    net = build(ROOT / "specs" / f"{spec}.wire")
    live = network_cost(net).macs  # the budget's count: what `inspect` gives before training
    twin = dense_twin(net, live)
    # every width narrowed by the one factor, the classifier's classes kept
    head = classifier(net)
    (last,) = [x for x in net.layers() if x.path == head]
    assert last.op == "linear" and last.params["out"] == net.classes
    expect = widths(net)
    got = widths(twin.net)
    assert len(got) == len(expect)
    assert got[:-1] == [narrowed(w, twin.factor) for w in expect[:-1]] and got[-1] == net.classes
    # every graph complete: its budget is every candidate, and nothing is sparse
    for g in twin.net.graphs():
        assert g.wiring.method == "complete" and g.budget.k in (None, g.candidates)
    assert all(x.sparse is None for x in twin.net.layers())
    assert twin.macs == network_cost(twin.net).macs
    # the closest count: 1% of the learned one here, and no closer at the neighbouring widths
    assert abs(twin.macs - live) <= 0.01 * live
    for other in (twin.factor * 0.97, twin.factor * 1.03):
        near = _build(net, other)
        assert near is None or abs(near.macs - live) >= abs(twin.macs - live)


def test_factors_whose_widths_no_longer_fit_are_skipped(tmp_path):
    # a conv with 4 groups: its output must stay a multiple of 4, so most factors do not build
    path = tmp_path / "grouped.wire"
    path.write_text(
        "network grouped {\n  input image(4, 8, 8)\n  classes 3\n"
        "  stem {\n    conv(16, k=3, groups=4), relu\n  }\n"
        "  graph g {\n    nodes a[16] input op(relu)\n    nodes h[16] op(relu)\n"
        "    nodes o[8] output\n    edges forward(a, h, o)\n    budget 50%\n    wiring dnw\n  }\n"
        "  head {\n    avgpool, linear(classes)\n  }\n}\n"
    )
    net = build(path)
    assert _build(net, 0.3) is None  # 16 x 0.3 -> 5 channels: 4 groups do not divide them
    twin = dense_twin(net, network_cost(net).macs)
    assert twin.net.items[0].params["out"] % 4 == 0
    assert twin.net.items[0].params["out"] == narrowed(16, twin.factor)


def test_a_network_with_no_width_that_builds_has_no_twin(monkeypatch):
    net = build(ROOT / "specs" / "quickstart.wire")
    # `wirelang.export` is also a function's name: the module is reached by its full name
    module = importlib.import_module("wirelang.export.dense")
    monkeypatch.setattr(module, "_build", lambda net, factor: None)
    with pytest.raises(NoTwin, match="no width multiplier of quickstart builds as a dense network"):
        dense_twin(net, 1000)


@pytest.mark.parametrize("spec", sorted(p.stem for p in (ROOT / "specs").glob("*.wire")))
def test_every_shipped_spec_has_a_dense_twin_of_its_size(spec):
    # residual networks, sparse layers, discrete and continuous time, two-phase wirings
    # (fine-tune, lottery: the twin trains in one phase) all narrow to a network that builds
    net = build(ROOT / "specs" / f"{spec}.wire")
    live = network_cost(net).macs
    twin = dense_twin(net, live)
    assert abs(twin.macs - live) <= 0.02 * live
    assert all(x.sparse is None for x in twin.net.layers())
    assert all(g.wiring.method == "complete" for g in twin.net.graphs())
