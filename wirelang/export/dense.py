"""The dense network of the same live size: what a learned wiring's compact model is measured
against in `wirelang export`'s report.

`dense_twin(net, macs)` is the network at a width multiplier: every graph complete (each
candidate edge a weight, no budget), every set of every graph and every conv and linear layer
narrowed by one common factor, every layer dense. What the image feeds (a first graph's input
sets) and what gives the scores (the classifier, or the output sets of a graph that ends the
network) keep their widths (`fixed_widths`); graphs start at the narrowed fan-in. The
factor is the one whose multiply-adds per image (`wirelang.cost`, the count `compile` and
`inspect` give) come closest to `macs`, the learned network's live count. It is the dense
network of the paper's comparisons (MobileNetV1 at a width multiplier against DNW at the same
multiply-adds), for any spec: complete graphs in place of the chains of a hand-made network.

The twin is printed as .wire text by the frozen exporter's printer and built by the front end,
so it is a network the language states, checked by the same passes. Rounding can make widths
that no longer fit (two input sets that no longer sum to the layer before, a grouped conv whose
groups no longer divide its channels): such factors are refused by the front end and left out
of the search, and the nearest factor that builds is taken instead. A network with no factor
that builds, or none within `TOLERANCE` of the count, has no twin (`NoTwin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wirelang.cost import network_cost
from wirelang.diagnostics import SpecError
from wirelang.export.frozen import IRPrinter, flat, layer_text, network_text
from wirelang.ir import core
from wirelang.version import __version__

# Bisection steps on the width multiplier: 2^-16 of a set's size, below one node for sets of
# up to 65,536 nodes, so the closest whole sizes are found.
_STEPS = 16
# Factors tried around one that does not build, on each side, in sixteenths of the interval.
_PROBES = 7
# A twin further than this from the count it is to match is not reported as its dense twin.
TOLERANCE = 0.05


class NoTwin(ValueError):
    """No width multiplier gives a network of about the learned count that the front end accepts."""


@dataclass(frozen=True)
class DenseTwin:
    net: core.Network
    factor: float  # every width times this, rounded, at least 1
    macs: int  # multiply-adds per image, `wirelang.cost`'s count


@dataclass(frozen=True)
class _Fixed:
    """The widths that keep their size: what the image feeds and what gives the scores."""

    layer: str | None  # the classifier's path
    sets: frozenset[tuple[str, str]]  # (graph, set): input sets fed by the image, output sets
    # of a graph that ends the network


def fixed_widths(net: core.Network) -> _Fixed:
    """The first item's input sets, when it is a graph, take the image's channels; the last
    item that sets a width gives the class scores: a layer (the classifier) or a graph's output
    sets."""
    sets: set[tuple[str, str]] = set()
    first = net.items[0] if net.items else None
    if isinstance(first, core.Graph):
        sets |= {(first.name, s.name) for s in first.sets if s.role == "input"}
    layer = None
    for item in reversed(net.items):
        if isinstance(item, core.Graph):
            sets |= {(item.name, s.name) for s in item.sets if s.role == "output"}
            break
        layers = (
            [item] if isinstance(item, core.Layer) else item.branch + item.shortcut + item.after
        )
        widths = [x for x in layers if "out" in x.params]
        if widths:
            layer = widths[-1].path
            break
    return _Fixed(layer, frozenset(sets))


class _DensePrinter(IRPrinter):
    """Prints every graph complete and every width narrowed, every layer dense."""

    def __init__(self, factor: float, fixed: _Fixed):
        super().__init__(model=None, edges={})
        self.factor = factor
        self.fixed = fixed

    def sparse_k(self, layer: core.Layer) -> int | None:
        return None

    def text(self, layer: core.Layer) -> str:
        if "out" not in layer.params or layer.path == self.fixed.layer:
            return layer_text(layer)
        params = dict(layer.params)
        out = narrowed(params["out"], self.factor)
        if params.get("groups", 1) == params["out"]:  # a depthwise conv written as a conv
            params["groups"] = out
        params["out"] = out
        return layer_text(layer.model_copy(update={"params": params}))

    def graph(self, g: core.Graph) -> None:
        sets = [
            s
            if (g.name, s.name) in self.fixed.sets
            else s.model_copy(update={"size": narrowed(s.size, self.factor)})
            for s in g.sets
        ]
        fan = getattr(g.init, "fan", None)  # the default counts the sending nodes: narrowed too
        init = (
            g.init if fan is None else g.init.model_copy(update={"fan": narrowed(fan, self.factor)})
        )
        self.open(f"graph {flat(g.name)}")
        self.structure(g.model_copy(update={"sets": sets}))
        self.line("wiring complete")
        self.semantics(g.model_copy(update={"init": init}))


def narrowed(size: int, factor: float) -> int:
    return max(1, round(size * factor))


def dense_text(net: core.Network, factor: float) -> str:
    """The twin at one width multiplier, as .wire text."""
    header = [
        f"# The dense twin of {net.name} (wirelang {__version__}): every graph complete, "
        f"every width at {factor:.4f} of its own."
    ]
    # a second training phase belongs to the wirings that fix a mask (lottery, fine-tune), which
    # a network of complete graphs has not got
    train = {k: v for k, v in net.train.items() if k != "phase2"}
    return network_text(net, _DensePrinter(factor, fixed_widths(net)), header, [], train)


def _build(net: core.Network, factor: float) -> DenseTwin | None:
    from wirelang.frontend import build

    try:
        twin = build(Path(f"{net.name}-dense.wire"), text=dense_text(net, factor))
    except SpecError:  # widths that no longer fit after rounding
        return None
    return DenseTwin(twin, factor, int(network_cost(twin).macs))


def _near(net: core.Network, low: float, high: float) -> DenseTwin | None:
    """The twin at the middle of (low, high), or at the factor nearest it that builds."""
    mid, step = (low + high) / 2, (high - low) / 16
    for factor in [mid] + [
        mid + sign * i * step for i in range(1, _PROBES + 1) for sign in (-1, 1)
    ]:
        twin = _build(net, factor)
        if twin is not None:
            return twin
    return None


def dense_twin(net: core.Network, macs: int) -> DenseTwin:
    """The twin whose multiply-adds per image come closest to `macs` (see the module
    docstring). Raises NoTwin when no factor builds, or none within `TOLERANCE` of `macs`."""
    built = [t for t in (_build(net, 0.0), _build(net, 1.0)) if t is not None]
    low, high = 0.0, 1.0
    for _ in range(_STEPS):  # the count grows with the factor: bisect on it
        twin = _near(net, low, high)
        if twin is None:  # nothing builds between them
            break
        built.append(twin)
        low, high = (twin.factor, high) if twin.macs <= macs else (low, twin.factor)
    if not built:
        raise NoTwin(f"no width multiplier of {net.name} builds as a dense network")
    best = min(built, key=lambda t: (abs(t.macs - macs), t.factor))
    if abs(best.macs - macs) > TOLERANCE * macs:
        raise NoTwin(
            f"the dense network of {net.name} nearest its live size has {best.macs:,} multiply-adds "
            f"against {macs:,} (width {best.factor:.3f}): no dense twin within {TOLERANCE:.0%}"
        )
    return best
