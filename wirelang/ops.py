"""The layer vocabulary, torch-free: each op's parameters, output shape and analytic cost.

Ops are registered by name (`list_ops()`); the spec's `conv(64, k=3, stride=2)` is checked
against the op's parameter list here, and the backend (`wirelang.backend.modules`) maps the same
names to torch modules. Counting rules follow the paper: batch-norm affine parameters are
parameters; convolutions and linear layers are the multiply-adds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from wirelang.ir.core import Layer, Shape


class OpError(ValueError):
    """A parameter or shape problem; the pass that raises it attaches the span."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: str  # "int", "float", "bool", "str", "int?", "budget", "ints"
    default: object = None
    required: bool = False
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    # Left out of the IR's data (`wirelang.ir.meaning.ir_data`) while it holds its default: a
    # parameter added after networks were identified by that data, so that adding it changes no
    # existing network's identity. The typed IR model always holds it.
    implicit: bool = False


@dataclass(frozen=True)
class OpSpec:
    name: str
    params: tuple[ParamSpec, ...]
    shape: Callable[[dict, Shape], Shape]
    cost: Callable[[dict, Shape, Shape], tuple[int, int]]  # (parameters, multiply-adds)
    per_channel: bool = True  # usable in a node set's operator (acts on each channel alone)
    weighted: bool = False  # has a conv/linear weight that can be made sparse
    doc: str = ""
    positional: tuple[str, ...] = field(default=())

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)


_OPS: dict[str, OpSpec] = {}


def register_op(spec: OpSpec) -> OpSpec:
    assert spec.name not in _OPS, spec.name
    _OPS[spec.name] = spec
    return spec


def get_op(name: str) -> OpSpec | None:
    return _OPS.get(name)


def list_ops() -> list[str]:
    return sorted(_OPS)


def _out(size: int, k: int, stride: int, pad: int, what: str) -> int:
    out = (size + 2 * pad - k) // stride + 1
    if out < 1:
        raise OpError(
            f"{what}: a {size}-pixel input is too small for kernel {k} with padding {pad}"
        )
    return out


def _conv_shape(p: dict, s: Shape) -> Shape:
    k, stride = p["k"], p["stride"]
    pad = k // 2 if p.get("padding") is None else p["padding"]
    groups = p.get("groups", 1)
    out = p.get("out") or s.channels
    if s.channels % groups or out % groups:
        raise OpError(
            f"groups={groups} must divide the input channels ({s.channels}) and the output channels ({out})"
        )
    return Shape(
        channels=out,
        height=_out(s.height, k, stride, pad, "conv"),
        width=_out(s.width, k, stride, pad, "conv"),
    )


def conv_weight_count(p: dict, s: Shape) -> int:
    out = p.get("out") or s.channels
    return out * (s.channels // p.get("groups", 1)) * p["k"] * p["k"]


def sparse_weight_shape(layer: Layer) -> tuple[int, ...]:
    """The shape of the weight a sparse conv or linear layer masks, in PyTorch's layout:
    (out, in) for a linear layer, (out, in / groups, k, k) for a convolution. Empty before the
    shapes pass has given the layer its input."""
    s = layer.in_shape
    if s is None:
        return ()
    p = layer.params
    if layer.op == "linear":
        return (p["out"], s.channels)
    if layer.op == "dwconv":
        return (s.channels, 1, p["k"], p["k"])
    return (p.get("out") or s.channels, s.channels // p.get("groups", 1), p["k"], p["k"])


def sparse_candidates(layer: Layer) -> int:
    """The weights a sparse layer masks (0 before its input shape is known)."""
    shape = sparse_weight_shape(layer)
    return math.prod(shape) if shape else 0


def _conv_cost(p: dict, s: Shape, o: Shape) -> tuple[int, int]:
    w = conv_weight_count(p, s)
    return w + (o.channels if p.get("bias") else 0), w * o.height * o.width


def _none(p: dict, s: Shape, o: Shape) -> tuple[int, int]:
    return 0, 0


def _same(p: dict, s: Shape) -> Shape:
    return s


def _norm_cost(p: dict, s: Shape, o: Shape) -> tuple[int, int]:
    return (2 * s.channels if p.get("affine", True) else 0), 0


def _pool_shape(p: dict, s: Shape) -> Shape:
    if p.get("k") is None:  # global pooling
        return Shape(channels=s.channels, height=1, width=1)
    k = p["k"]
    stride = p.get("stride") or k
    pad = p.get("padding") or 0
    return Shape(
        channels=s.channels,
        height=_out(s.height, k, stride, pad, "pool"),
        width=_out(s.width, k, stride, pad, "pool"),
    )


def _crop_shape(p: dict, s: Shape) -> Shape:
    size = p["size"]
    if size > s.height or size > s.width:
        raise OpError(
            f"centercrop({size}) needs maps of at least {size}x{size}, got {s.height}x{s.width}"
        )
    return Shape(channels=s.channels, height=size, width=size)


def _flatten_shape(p: dict, s: Shape) -> Shape:
    return Shape(channels=s.channels * s.height * s.width, height=1, width=1)


def _linear_shape(p: dict, s: Shape) -> Shape:
    if s.height != 1 or s.width != 1:
        raise OpError(
            f"linear needs a flat input but gets {s.height}x{s.width} maps; put `avgpool` or `flatten` before it"
        )
    return Shape(channels=p["out"], height=1, width=1)


def _linear_cost(p: dict, s: Shape, o: Shape) -> tuple[int, int]:
    w = s.channels * p["out"]
    return w + (p["out"] if p.get("bias", True) else 0), w


_K = ParamSpec("k", "int", 3, minimum=1)
_STRIDE = ParamSpec("stride", "int", 1, minimum=1)
_PADDING = ParamSpec("padding", "int?", None, minimum=0)
_SPARSE = ParamSpec("sparse", "budget", None)

register_op(
    OpSpec(
        "conv",
        (
            ParamSpec("out", "int", required=True, minimum=1),
            ParamSpec("k", "int", 1, minimum=1),
            _STRIDE,
            ParamSpec("groups", "int", 1, minimum=1),
            _PADDING,
            ParamSpec("bias", "bool", False),
            _SPARSE,
        ),
        _conv_shape,
        _conv_cost,
        per_channel=False,
        weighted=True,
        positional=("out",),
        doc="k x k convolution to `out` channels; padding defaults to k // 2",
    )
)
register_op(
    OpSpec(
        "dwconv",
        (_K, _STRIDE, _PADDING, ParamSpec("bias", "bool", False), _SPARSE),
        lambda p, s: _conv_shape({**p, "groups": s.channels, "out": s.channels}, s),
        lambda p, s, o: _conv_cost({**p, "groups": s.channels, "out": s.channels}, s, o),
        weighted=True,
        positional=("k",),
        doc="depthwise k x k convolution: one single-channel filter per channel",
    )
)
register_op(
    OpSpec(
        "batchnorm",
        (ParamSpec("affine", "bool", True),),
        _same,
        _norm_cost,
        doc="batch normalisation",
    )
)
register_op(
    OpSpec(
        "instancenorm",
        (ParamSpec("affine", "bool", True),),
        _same,
        _norm_cost,
        doc="instance normalisation (affine by default, as in the paper)",
    )
)
for _act, _doc in [
    ("relu", "max(x, 0)"),
    ("relu6", "min(max(x, 0), 6)"),
    ("gelu", "GELU"),
    ("silu", "x * sigmoid(x)"),
    ("sigmoid", "logistic"),
    ("tanh", "tanh"),
    ("identity", "no-op"),
]:
    register_op(OpSpec(_act, (), _same, _none, doc=_doc))
register_op(
    OpSpec(
        "leakyrelu",
        (ParamSpec("slope", "float", 0.01),),
        _same,
        _none,
        positional=("slope",),
        doc="leaky ReLU",
    )
)
register_op(
    OpSpec(
        "maxpool",
        (
            ParamSpec("k", "int", 2, minimum=1),
            ParamSpec("stride", "int?", None, minimum=1),
            ParamSpec("padding", "int", 0, minimum=0),
        ),
        _pool_shape,
        _none,
        positional=("k",),
        doc="max pooling (stride defaults to k)",
    )
)
register_op(
    OpSpec(
        "avgpool",
        (
            ParamSpec("k", "int?", None, minimum=1),
            ParamSpec("stride", "int?", None, minimum=1),
            ParamSpec("padding", "int", 0, minimum=0),
        ),
        _pool_shape,
        _none,
        positional=("k",),
        doc="average pooling; without k, global",
    )
)
register_op(
    OpSpec(
        "centercrop",
        (ParamSpec("size", "int", required=True, minimum=1),),
        _crop_shape,
        _none,
        positional=("size",),
        doc="keep the central size x size window",
    )
)
register_op(
    OpSpec("flatten", (), _flatten_shape, _none, per_channel=False, doc="C x H x W -> C*H*W")
)
register_op(
    OpSpec(
        "dropout",
        (ParamSpec("p", "float", 0.5, minimum=0),),
        _same,
        _none,
        positional=("p",),
        doc="dropout",
    )
)
register_op(
    OpSpec(
        "linear",
        (
            ParamSpec("out", "int", required=True, minimum=1),
            ParamSpec("bias", "bool", True),
            _SPARSE,
        ),
        _linear_shape,
        _linear_cost,
        per_channel=False,
        weighted=True,
        positional=("out",),
        doc="fully connected layer to `out` features",
    )
)
