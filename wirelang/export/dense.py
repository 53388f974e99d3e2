"""The dense network of the same live size: what a learned wiring's compact model is measured
against in `wirelang export`'s report.

`dense_twin(net, macs)` is the network at a width multiplier: every graph complete (each
candidate edge a weight, no budget), every set of every graph and every conv and linear layer
narrowed by one common factor (the classifier keeps its classes), every layer dense. The
factor is the one whose multiply-adds per image (`wirelang.cost`, the count `compile` and
`inspect` give) come closest to `macs`, the learned network's live count. It is the dense
network of the paper's comparisons (MobileNetV1 at a width multiplier against DNW at the same
multiply-adds), for any spec: complete graphs in place of the chains of a hand-made network.

The twin is printed as .wire text by the frozen exporter's printer and built by the front end,
so it is a network the language states, checked by the same passes. Rounding can make widths
that no longer fit (two input sets that no longer sum to the layer before, a grouped conv whose
groups no longer divide its channels): such factors are refused by the front end and left out
of the search; a network with no factor that builds has no twin (`NoTwin`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wirelang.cost import network_cost
from wirelang.diagnostics import SpecError
from wirelang.export.frozen import _Printer, flat, layer_text, network_text
from wirelang.ir import core
from wirelang.version import __version__

# Bisection steps on the width multiplier: 2^-16 of a set's size, below one node for sets of
# up to 65,536 nodes, so the closest whole sizes are found.
_STEPS = 16


class NoTwin(ValueError):
    """No width multiplier gives a network the front end accepts."""


@dataclass(frozen=True)
class DenseTwin:
    net: core.Network
    factor: float  # every width times this, rounded, at least 1
    macs: int  # multiply-adds per image, `wirelang.cost`'s count


class _DensePrinter(_Printer):
    """Prints every graph complete and every width narrowed, every layer dense."""

    def __init__(self, factor: float, classifier: str | None):
        super().__init__(model=None, edges={})
        self.factor = factor
        self.classifier = classifier  # the path of the layer that gives the scores

    def sparse_k(self, layer: core.Layer) -> int | None:
        return None

    def text(self, layer: core.Layer) -> str:
        if "out" not in layer.params or layer.path == self.classifier:
            return layer_text(layer)
        out = narrowed(layer.params["out"], self.factor)
        return layer_text(layer.model_copy(update={"params": {**layer.params, "out": out}}))

    def graph(self, g: core.Graph) -> None:
        sets = [s.model_copy(update={"size": narrowed(s.size, self.factor)}) for s in g.sets]
        self.open(f"graph {flat(g.name)}")
        self.structure(g.model_copy(update={"sets": sets}))
        self.line("wiring complete")
        self.semantics(g)


def narrowed(size: int, factor: float) -> int:
    return max(1, round(size * factor))


def classifier(net: core.Network) -> str | None:
    """The path of the last layer with a width of its own: its `out` is the class count."""
    layers = [x for x in net.layers() if "out" in x.params]
    return layers[-1].path if layers and layers[-1].params["out"] == net.classes else None


def dense_text(net: core.Network, factor: float) -> str:
    """The twin at one width multiplier, as .wire text."""
    header = [
        f"# The dense twin of {net.name} (wirelang {__version__}): every graph complete, "
        f"every width at {factor:.4f} of its own."
    ]
    # a second training phase belongs to the wirings that fix a mask (lottery, fine-tune), which
    # a network of complete graphs has not got
    train = {k: v for k, v in net.train.items() if k != "phase2"}
    return network_text(net, _DensePrinter(factor, classifier(net)), header, [], train)


def _build(net: core.Network, factor: float) -> DenseTwin | None:
    from wirelang.frontend import build

    try:
        twin = build(Path(f"{net.name}-dense.wire"), text=dense_text(net, factor))
    except SpecError:  # widths that no longer fit after rounding
        return None
    return DenseTwin(twin, factor, int(network_cost(twin).macs))


def dense_twin(net: core.Network, macs: int) -> DenseTwin:
    """The twin whose multiply-adds per image come closest to `macs` (see the module
    docstring). Raises NoTwin when no factor builds."""
    low, high = 0.0, 1.0
    built: list[DenseTwin] = []
    for _ in range(_STEPS):  # the count grows with the factor: bisect on it
        mid = (low + high) / 2
        twin = _build(net, mid)
        if twin is None:  # step past a factor that does not build, towards the other end
            low, high = (mid, high) if built and built[-1].factor < mid else (low, mid)
            continue
        built.append(twin)
        low, high = (mid, high) if twin.macs <= macs else (low, mid)
    for factor in (0.0, 1.0):
        end = _build(net, factor)
        if end is not None:
            built.append(end)
    if not built:
        raise NoTwin(f"no width multiplier of {net.name} builds as a dense network")
    return min(built, key=lambda t: (abs(t.macs - macs), t.factor))
