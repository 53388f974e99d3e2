"""The dense network of the same live size (`wirelang.export.dense`), the compact model's
yardstick in `wirelang export`'s report."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from wirelang.cost import network_cost
from wirelang.export.dense import NoTwin, _build, dense_twin, fixed_widths, narrowed
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
    head = fixed_widths(net).layer
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


def spec(tmp_path, name: str, body: str):
    path = tmp_path / f"{name}.wire"
    path.write_text(f"network {name} {{\n{body}\n}}\n")
    return build(path)


GRAPH = """
  graph g {
    nodes a[20] input op(relu)
    nodes h[16] op(relu)
    nodes o[8] output
    edges forward(a, h, o)
    budget 50%
    wiring dnw
  }"""


def test_factors_whose_widths_no_longer_fit_are_skipped(tmp_path):
    # a conv with 4 groups on 4 image channels: its output must stay a multiple of 4, so only
    # factors near 0.2, 0.4, 0.6, 0.8 and 1 build (0.5, the first middle, does not); the
    # search finds the buildable width nearest the count asked for, here 0.8's
    net = spec(
        tmp_path,
        "grouped",
        "  input image(4, 8, 8)\n  classes 3\n  stem {\n    conv(20, k=3, groups=4), relu\n  }"
        + GRAPH
        + "\n  head {\n    avgpool, linear(classes)\n  }",
    )
    assert _build(net, 0.5) is None and _build(net, 0.3) is None
    target = _build(net, 0.8)
    twin = dense_twin(net, target.macs)
    assert twin.net.items[0].params["out"] == 16 == narrowed(20, twin.factor)
    assert twin.macs == target.macs


def test_the_image_and_the_scores_keep_their_widths(tmp_path):
    # a graph fed by the image keeps its input sets; a graph that ends the network keeps its
    # output sets (the scores), and an earlier linear(10) is narrowed like any other layer
    first = spec(
        tmp_path,
        "first",
        "  input image(3, 16, 16)\n  classes 10\n  graph g {\n    nodes a[3] input op(relu)\n"
        "    nodes h[64] * 3 op(relu, dwconv(k=3))\n    nodes o[64] output\n"
        "    edges forward(a, h, o)\n    budget 10%\n    wiring dnw\n  }\n"
        "  head {\n    avgpool, linear(classes)\n  }",
    )
    twin = dense_twin(first, network_cost(first).macs)
    sizes = {s.name: s.size for s in twin.net.graphs()[0].sets}
    assert sizes["a"] == 3 and sizes["h.1"] == narrowed(64, twin.factor) < 64
    last = spec(
        tmp_path,
        "last",
        "  input image(3, 16, 16)\n  classes 10\n  stem {\n    conv(32, k=3, stride=4), relu, "
        "avgpool, flatten, linear(10)\n  }\n  graph g {\n    nodes a[10] input op(relu)\n"
        "    nodes h[64] op(relu)\n    nodes o[10] output\n    edges forward(a, h, o)\n"
        "    budget 20%\n    wiring dnw\n  }",
    )
    assert fixed_widths(last).layer is None
    twin = dense_twin(last, network_cost(last).macs)
    sizes = {s.name: s.size for s in twin.net.graphs()[0].sets}
    assert sizes["o"] == 10 and sizes["h"] == narrowed(64, twin.factor) < 64
    assert twin.net.items[-2].params["out"] == narrowed(10, twin.factor)
    assert abs(twin.macs - network_cost(last).macs) <= 0.05 * network_cost(last).macs


def test_a_depthwise_conv_written_as_a_conv_narrows_its_groups(tmp_path):
    net = spec(
        tmp_path,
        "dwgroups",
        "  input image(3, 16, 16)\n  classes 10\n  stem {\n    conv(32, k=3), relu\n"
        "    conv(32, k=3, groups=32), relu\n    conv(64, k=1), relu\n  }\n"
        "  graph g {\n    nodes a[64] input op(relu)\n    nodes h[64] op(relu)\n"
        "    nodes o[64] output\n    edges forward(a, h, o)\n    budget 20%\n"
        "    wiring dnw\n  }\n  head {\n    avgpool, linear(classes)\n  }",
    )
    live = network_cost(net).macs
    twin = dense_twin(net, live)
    dw = twin.net.items[2]
    assert dw.params["groups"] == dw.params["out"] == narrowed(32, twin.factor) < 32
    assert abs(twin.macs - live) <= 0.02 * live


def test_the_twin_starts_its_graphs_at_the_narrowed_fan_in():
    # `init uniform` draws at 1/sqrt(fan), fan the graph's sending nodes by default: narrowed
    net = build(ROOT / "specs" / "quickstart.wire")
    twin = dense_twin(net, network_cost(net).macs)
    (g,) = net.graphs()
    (t,) = twin.net.graphs()
    assert t.init.fan == narrowed(g.init.fan, twin.factor) < g.init.fan


def test_no_twin_when_the_nearest_is_far_from_the_count(tmp_path):
    net = build(ROOT / "specs" / "quickstart.wire")
    smallest = _build(net, 0.0).macs
    with pytest.raises(NoTwin, match=r"no dense twin within 5%"):
        dense_twin(net, smallest // 2)


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
