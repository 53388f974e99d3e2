"""Torch modules for the layer vocabulary of `wirelang.ops`, and the sparse conv / linear.

`build_layer(layer)` maps an IR layer to a module; a layer with a `sparse` spec becomes a
`SparseConv2d` / `SparseLinear` whose weight is masked by an `EdgeMask` (the same code that
masks graph edges).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from wirelang.backend.masks import EdgeMask
from wirelang.cost import budget_k
from wirelang.ir import core
from wirelang.ops import sparse_candidates


class CenterCrop(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        top, left = (h - self.size) // 2, (w - self.size) // 2
        return x[..., top : top + self.size, left : left + self.size]


class FlatLinear(nn.Linear):
    """A linear layer that flattens N x C x 1 x 1 (after global pooling) on its own."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(1))


class SparseMixin:
    """A conv or linear whose weight is masked by an EdgeMask (DNW for ordinary layers)."""

    mask: EdgeMask

    def attach_mask(self, wiring: core.Wiring, k: int, seed: int) -> None:
        # on the weight's device: `sparsify` may swap layers of a model already on a GPU
        mask = EdgeMask(wiring, k, self, ["weight"], [None], seed=seed)
        self.mask = mask.to(self.weight.device)

    def masked_weight(self) -> Tensor:
        return self.mask()[0]


class SparseConv2d(SparseMixin, nn.Conv2d):
    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)


class SparseLinear(SparseMixin, FlatLinear):
    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x.flatten(1), self.masked_weight(), self.bias)


def _padding(p: dict) -> int:
    return p["k"] // 2 if p.get("padding") is None else p["padding"]


def _conv(layer: core.Layer, cls=nn.Conv2d) -> nn.Module:
    p, s = layer.params, layer.in_shape
    groups = s.channels if layer.op == "dwconv" else p["groups"]
    out = s.channels if layer.op == "dwconv" else p["out"]
    return cls(
        s.channels,
        out,
        p["k"],
        stride=p["stride"],
        padding=_padding(p),
        groups=groups,
        bias=p["bias"],
    )


_BUILDERS: dict[str, Callable[[core.Layer], nn.Module]] = {
    "conv": _conv,
    "dwconv": _conv,
    "batchnorm": lambda L: nn.BatchNorm2d(L.in_shape.channels, affine=L.params["affine"]),
    "instancenorm": lambda L: nn.InstanceNorm2d(L.in_shape.channels, affine=L.params["affine"]),
    "relu": lambda L: nn.ReLU(),
    "relu6": lambda L: nn.ReLU6(),
    "gelu": lambda L: nn.GELU(),
    "silu": lambda L: nn.SiLU(),
    "sigmoid": lambda L: nn.Sigmoid(),
    "tanh": lambda L: nn.Tanh(),
    "identity": lambda L: nn.Identity(),
    "leakyrelu": lambda L: nn.LeakyReLU(L.params["slope"]),
    "maxpool": lambda L: nn.MaxPool2d(
        L.params["k"], L.params["stride"] or L.params["k"], L.params["padding"]
    ),
    "avgpool": lambda L: (
        nn.AdaptiveAvgPool2d(1)
        if L.params["k"] is None
        else nn.AvgPool2d(L.params["k"], L.params["stride"] or L.params["k"], L.params["padding"])
    ),
    "centercrop": lambda L: CenterCrop(L.params["size"]),
    "flatten": lambda L: nn.Flatten(1),
    "dropout": lambda L: nn.Dropout(L.params["p"]),
    "linear": lambda L: FlatLinear(L.in_shape.channels, L.params["out"], bias=L.params["bias"]),
}


def list_modules() -> list[str]:
    return sorted(_BUILDERS)


def build_layer(
    layer: core.Layer, seed: int = 0, pools: dict[str, core.Pool] | None = None
) -> nn.Module:
    """`pools`: the network's pools, for a sparse layer whose budget is a pool's."""
    assert layer.in_shape is not None, f"layer {layer.path} has no inferred shape"
    if layer.sparse is None:
        return _BUILDERS[layer.op](layer)
    if layer.op == "linear":
        module = SparseLinear(
            layer.in_shape.channels, layer.params["out"], bias=layer.params["bias"]
        )
    else:
        module = _conv(layer, SparseConv2d)
    k = budget_k(layer.sparse.budget, sparse_candidates(layer), pools or {}, layer.path)
    module.attach_mask(layer.sparse.wiring, k, seed)
    return module


def build_set_ops(layers: list[core.Layer], channels: int, hw: tuple[int, int]) -> nn.Module:
    """A node set's operator: one module per op over all of the set's channels (a grouped conv
    for `dwconv`), so no Python loop over single nodes ever runs."""
    mods = []
    shape = core.Shape(channels=channels, height=hw[0], width=hw[1])
    for layer in layers:
        layer = (
            layer if layer.in_shape is not None else layer.model_copy(update={"in_shape": shape})
        )
        mods.append(build_layer(layer))
    return nn.Sequential(*mods) if mods else nn.Identity()
