"""Refuse sizes that could never be allocated, before anything is: a memory estimate from counts.

Every candidate edge of a graph is one float32 weight (4 bytes), and so is every weight of a
layer (conv, linear, norms, node operators). Training needs as much again for the gradients and
for the optimizer's momentum, but the weights alone already decide whether a spec is hopeless:
a graph or a layer whose weights need more than the limit (64 GiB unless `WIRELANG_MAX_BYTES`
says otherwise) is an error at its span, and so is a network whose items are each small enough
but together too large. All counts are arithmetic on set sizes and shapes: this pass never does
work in proportion to the number of nodes or edges, so ten million nodes check in milliseconds.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal

from wirelang.diagnostics import Reporter, Span
from wirelang.ir import core
from wirelang.ops import get_op

BYTES_PER_WEIGHT = 4  # float32
DEFAULT_MAX_BYTES = 64 * 2**30
ENV_VAR = "WIRELANG_MAX_BYTES"

_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "p": 10**15,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
    "pi": 2**50,
}


def max_bytes(env: dict[str, str] | None = None) -> int | None:
    """The limit in bytes from `WIRELANG_MAX_BYTES` (`64GiB`, `5e11`, `200G`), or None if unreadable."""
    raw = (os.environ if env is None else env).get(ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtTpP]i?)?[bB]?", raw)
    if m is None:
        return None
    value = float(m.group(1)) * _UNITS[(m.group(2) or "").lower()]
    return int(value) if value >= 1 else None


def format_bytes(n: int) -> str:
    """Decimal units, three significant digits: `400 TB`, `1.5 GB`, `512 B`."""
    for power, unit in enumerate(("B", "kB", "MB", "GB", "TB", "PB", "EB")):
        value = Decimal(n) / 1000**power
        if value < Decimal("999.5") or unit == "EB":
            return f"{float(value) if value < 10**300 else value:.3g} {unit}"
    raise AssertionError  # pragma: no cover


def format_count(n: int) -> str:
    """`992`, `123,456`, `1.0e14`: exact while readable, then a mantissa and a power of ten."""
    if n < 10**7:
        return f"{n:,}"
    mantissa, exponent = f"{Decimal(n):.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def layer_weights(layer: core.Layer) -> int:
    """Weights a layer holds (its parameter count), from its params and shapes alone."""
    if layer.in_shape is None or layer.out_shape is None:
        return 0
    return get_op(layer.op).cost(layer.params, layer.in_shape, layer.out_shape)[0]


def set_weights(ns: core.NodeSet) -> int:
    """Weights of a node set's operators: each op layer's count covers all its channels."""
    return sum(layer_weights(x) for x in ns.op + ns.send)


def check_limits(net: core.Network, rep: Reporter) -> core.Network:
    limit = max_bytes()
    if limit is None:
        rep.error(
            net.span,
            f"`{ENV_VAR}={os.environ.get(ENV_VAR)}` is not a size in bytes",
            "write a number of bytes, such as `68719476736`, `64GiB` or `500G`",
        )
        return net
    items: list[tuple[Span, int, str]] = []
    for item in net.items:
        if isinstance(item, core.Graph):
            edges, weights = (
                item.candidates,
                item.candidates + sum(set_weights(s) for s in item.sets),
            )
            what = (
                f"graph `{item.name}` has {format_count(edges)} candidate edges, "
                f"which would need {format_bytes(weights * BYTES_PER_WEIGHT)} of weights"
            )
            items.append((item.span, weights, what))
        elif isinstance(item, core.Residual):
            for layer in item.branch + item.shortcut + item.after:
                items.append(_layer_item(layer))
        else:
            items.append(_layer_item(item))
    too_large = [x for x in items if x[1] * BYTES_PER_WEIGHT > limit]
    for span, _, what in too_large:
        rep.error(span, what, _hint(limit))
    total = sum(weights for _, weights, _ in items)
    if total * BYTES_PER_WEIGHT > limit and not too_large:
        span, weights, _ = max(items, key=lambda x: x[1])
        rep.error(
            net.span,
            f"network `{net.name}` has {format_count(total)} weights, which would need "
            f"{format_bytes(total * BYTES_PER_WEIGHT)}",
            _hint(limit),
            related=[(span, f"the largest part holds {format_count(weights)} weights")],
        )
    return net


def _layer_item(layer: core.Layer) -> tuple[Span, int, str]:
    weights = layer_weights(layer)
    return (
        layer.span,
        weights,
        (
            f"layer `{layer.op}` at {layer.path} has {format_count(weights)} weights, "
            f"which would need {format_bytes(weights * BYTES_PER_WEIGHT)}"
        ),
    )


def _hint(limit: int) -> str:
    shown = f"{limit // 2**30} GiB" if limit % 2**30 == 0 else format_bytes(limit)
    return (
        f"the limit is {shown} (set {ENV_VAR} to change it), and training needs as much again for the "
        "gradients and again for momentum; use smaller sizes"
    )
