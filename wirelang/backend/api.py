"""The compiled model: `compile_network(ir) -> WiredModel`.

>>> import torch, wirelang
>>> model = wirelang.load("specs/cifar_tiny.wire")
>>> model(torch.randn(2, 3, 32, 32)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import Tensor, nn

from wirelang.backend.lower import Emitter, GraphParts, ODEBlock, cat_channels, emit_graph, safe
from wirelang.backend.masks import EdgeMask, Pool, mask_hash
from wirelang.backend.modules import build_layer
from wirelang.cost import budget_k, ranks_jointly
from wirelang.ir import core


class WiredModel(nn.Module):
    """An ordinary nn.Module around the fx GraphModule, with the wiring's bookkeeping."""

    def __init__(self, net: core.Network, gm: fx.GraphModule):
        super().__init__()
        self.gm = gm
        object.__setattr__(self, "net", net)  # the IR: plain data, not a module

    def forward(self, x: Tensor) -> Tensor:
        return self.gm(x)

    # -- masks
    def masks(self) -> dict[str, EdgeMask]:
        """Every learned wiring by name: graph names and sparse layer paths."""
        out: dict[str, EdgeMask] = {}
        for g in self.net.graphs():
            out[g.name] = self.graph_parts(g.name).wiring.mask
        for layer in self.net.layers():
            if layer.sparse is not None:
                out[layer.path] = getattr(self.gm, safe(layer.path)).mask
        return out

    def graph_parts(self, name: str) -> GraphParts:
        module = getattr(self.gm, safe(name))
        return module.parts if isinstance(module, ODEBlock) else module

    @torch.no_grad()
    def active_masks(self) -> dict[str, Tensor]:
        """Per wiring, the active edges as one flat boolean vector over its stored weights."""
        return {
            name: torch.cat([m.flatten() for m in mask.active()])
            for name, mask in self.masks().items()
        }

    def count_params(self) -> int:
        """Parameters as the paper counts them: each wiring holds exactly its k weights."""
        masked = {id(w): m for m in self.masks().values() for w in m.weights()}
        total = 0
        for p in self.parameters():
            total += p.numel() if id(p) not in masked else 0
        for m in self.masks().values():
            total += m.k if m.pool is None else 0
        for pool in {
            id(m.pool): m.pool for m in self.masks().values() if m.pool is not None
        }.values():
            total += pool.k
        return total

    def mask_hash(self) -> str:
        return mask_hash(list(self.active_masks().values()))

    def set_progress(self, fraction: float) -> None:
        """Training progress in [0, 1], for methods with a schedule (l1_anneal)."""
        for m in self.masks().values():
            m.progress = float(fraction)

    def regularization(self) -> Tensor:
        terms = [m.regularization() for m in self.masks().values() if m.spec.regularizer]
        return sum(terms) if terms else torch.zeros(())

    def two_phase(self) -> str | None:
        """The network's two-phase wiring method (the builder allows one), None without one."""
        found = {m.method for m in self.masks().values() if m.spec.two_phase}
        return found.pop() if found else None

    def freeze_topk(self) -> None:
        """Start phase two of lottery_one_shot / fine_tune: fix the top k of the weights now."""
        for m in self.masks().values():
            if m.spec.two_phase:
                m.freeze_topk()

    def nfe(self) -> dict[str, int]:
        return {
            g.name: self.graph_parts_block(g.name).nfe
            for g in self.net.graphs()
            if g.semantics.kind == "continuous"
        }

    def graph_parts_block(self, name: str) -> ODEBlock:
        return getattr(self.gm, safe(name))


def compile_network(net: core.Network, seed: int | None = None) -> WiredModel:
    """Build the model. `seed` fixes the initial weights and random masks (default: train seed)."""
    seed = int(net.train.get("seed", 0)) if seed is None else seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _compile(net, seed)


def _compile(net: core.Network, seed: int) -> WiredModel:
    root = nn.Module()
    em = Emitter(root)
    x = em.graph.placeholder("x")
    x.meta["span"] = str(net.span)
    pools = {p.name: Pool(p.name, p.budget.k) for p in net.pools}
    pool_info = {p.name: p for p in net.pools}
    for item in net.items:
        if isinstance(item, core.Layer):
            x = em.module(item.path, build_layer(item, seed, pool_info), (x,), item, item.path)
        elif isinstance(item, core.Residual):
            x = _residual(em, item, x, seed, pool_info)
        else:
            k = budget_k(item.budget, item.candidates, pool_info, item.name)
            x = emit_graph(em, item, x, k, seed)
    em.graph.output(x)
    em.graph.lint()
    gm = fx.GraphModule(root, em.graph, class_name=f"Wired_{safe(net.name)}")
    # GraphModule copies only the leaf modules the code calls, wrapping them in new plain
    # containers; put the original top-level modules back so GraphParts keep their type.
    for name, child in root.named_children():
        setattr(gm, name, child)
    model = WiredModel(net, gm)
    _join_pools(model, net, pools, pool_info)
    return model


def _join_pools(
    model: WiredModel, net: core.Network, pools: dict[str, Pool], info: dict[str, core.Pool]
) -> None:
    budgets = {g.name: g.budget for g in net.graphs()}
    budgets.update(
        {layer.path: layer.sparse.budget for layer in net.layers() if layer.sparse is not None}
    )
    for name, mask in model.masks().items():
        b = budgets[name]
        if ranks_jointly(b, mask.method, info):
            pool = pools[b.pool]
            mask.pool = pool
            pool.members.append(mask)


def _residual(
    em: Emitter, res: core.Residual, x: fx.Node, seed: int, pools: dict[str, core.Pool]
) -> fx.Node:
    b = x
    for layer in res.branch:
        b = em.module(layer.path, build_layer(layer, seed, pools), (b,), layer, layer.path)
    s = x
    for layer in res.shortcut:
        s = em.module(layer.path, build_layer(layer, seed, pools), (s,), layer, layer.path)
    out = em.call(torch.add, (b, s), res, f"{res.name}.add")
    for layer in res.after:
        out = em.module(layer.path, build_layer(layer, seed, pools), (out,), layer, layer.path)
    return out


__all__ = ["WiredModel", "cat_channels", "compile_network"]
