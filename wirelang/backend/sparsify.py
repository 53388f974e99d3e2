"""DNW-sparse weights for a model the user already has (e.g. a torchvision ResNet-50).

    >>> import torchvision, wirelang
    >>> model = wirelang.sparsify(torchvision.models.resnet50(), budget=0.1, exclude=["conv1"])

Every nn.Conv2d and nn.Linear (except the excluded names and their children) is replaced in
place by a SparseConv2d / SparseLinear that keeps exactly floor(budget * numel) weights in the
forward pass (or `budget` weights when it is an int), chosen by the same EdgeMask that learns
graph edges. `allocate` shares one budget over all layers instead, as a spec's `pool ...
allocate=` does (`cost.member_ks` owns the split): `global` ranks all layers together, `uniform`
and `erk` give each layer its own exact k. Batch norm and biases stay dense.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import get_args

from torch import nn

from wirelang import cost, methods
from wirelang.backend.masks import Pool
from wirelang.backend.modules import SparseConv2d, SparseLinear
from wirelang.ir.core import Allocation

# "layer": each layer keeps the budget of its own weights (no shared budget); the others are the
# spec's pool allocations.
ALLOCATIONS = ("layer", *get_args(Allocation))


def _k(budget: float | int, numel: int) -> int:
    if (
        isinstance(budget, int)
        and not isinstance(budget, bool)
        and budget >= 1
        and not isinstance(budget, float)
    ):
        return min(budget, numel)
    if not 0 < float(budget) <= 1:
        raise ValueError(f"budget must be a fraction in (0, 1] or an integer count, got {budget!r}")
    return max(1, math.floor(float(budget) * numel))


def _swap(module: nn.Module) -> nn.Module:
    """A sparse twin of a Conv2d / Linear that shares its parameters."""
    if isinstance(module, nn.Conv2d):
        new = SparseConv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
            module.padding_mode,
            device=module.weight.device,
            dtype=module.weight.dtype,
        )
    else:
        new = SparseLinear(
            module.in_features,
            module.out_features,
            module.bias is not None,
            device=module.weight.device,
            dtype=module.weight.dtype,
        )
    new.weight = module.weight
    if module.bias is not None:
        new.bias = module.bias
    new.train(module.training)
    return new


def sparsify(
    model: nn.Module,
    budget: float | int,
    method: str = "dnw",
    exclude: Iterable[str] = (),
    pooled: bool = False,
    seed: int = 0,
    allocate: str | None = None,
) -> nn.Module:
    # a listed wiring's edges come from a spec's graph; a layer's weight has none to list
    usable = [m for m in methods.list_wirings() if not methods.WIRINGS[m].edges_listed]
    if method not in usable:
        raise ValueError(f"method must be one of {', '.join(usable)}, got {method!r}")
    if allocate is not None and allocate not in ALLOCATIONS:
        raise ValueError(f"allocate must be one of {', '.join(ALLOCATIONS)}, got {allocate!r}")
    if pooled and allocate not in (None, "global"):
        raise ValueError(
            f"pooled=True is allocate='global'; it cannot be combined with {allocate!r}"
        )
    allocate = "global" if pooled else (allocate or "layer")
    excluded = list(exclude)
    names = {name for name, _ in model.named_modules()}
    unknown = [e for e in excluded if e not in names]
    if unknown:
        raise ValueError(f"no module named {', '.join(map(repr, unknown))} in the model")
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if type(m) in (nn.Conv2d, nn.Linear)
        and not any(name == e or name.startswith(e + ".") for e in excluded)
    ]
    total = _k(budget, sum(m.weight.numel() for _, m in targets)) if targets else 0
    if allocate in ("uniform", "erk"):
        # one part per layer: its weight's dimensions and size, as a spec's sparse layer
        parts = [[(tuple(m.weight.shape), m.weight.numel())] for _, m in targets]
        ks = cost.member_ks(total, allocate, parts)
        if 0 in ks:
            empty = [name for (name, _), k in zip(targets, ks, strict=True) if k == 0]
            raise ValueError(
                f"allocate={allocate!r} leaves {', '.join(map(repr, empty))} without a weight: "
                "raise the budget or exclude them"
            )
    else:
        ks = [_k(budget, m.weight.numel()) for _, m in targets]
    swapped = []
    for (name, m), k in zip(targets, ks, strict=True):
        new = _swap(m)
        new.attach_mask(methods.new_wiring(method), k, seed)
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        setattr(parent, name.rsplit(".", 1)[-1], new)
        swapped.append(new)
    if allocate == "global" and swapped:
        pool = Pool("sparsify", total)
        for s in swapped:
            s.mask.pool = pool
            pool.members.append(s.mask)
    return model
