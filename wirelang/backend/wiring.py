"""A graph's learned edges as modules: one weight matrix per target set, one mask over all.

For a target set B whose candidate sources are A1..Am (in declaration order), the incoming
edges are one matrix W_B of shape |B| x (|A1| + ... + |Am|): the edges from set Ai to B are a
1x1 convolution with the block W_B[:, cols(Ai)]. Sources are concatenated once, so each target
costs one matrix product instead of one per block.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from wirelang.backend.masks import EdgeMask
from wirelang.ir import core
from wirelang.methods import WIRINGS, ranks_square


def init_edges(w: Tensor, init: core.Init, mean_in_degree: float) -> Tensor:
    """Draw edge weights in place as `init` says (see `wirelang.methods.INITS`)."""
    if isinstance(init, core.UniformInit):
        bound = 1.0 / math.sqrt(float(init.fan))
        return nn.init.uniform_(w, -bound, bound)
    if isinstance(init, core.NormalInit):
        return nn.init.normal_(w, std=init.std)
    return nn.init.normal_(w, std=math.sqrt(2.0 / mean_in_degree))  # kaiming at the budget


def outside_scores(count: int, init: core.Init, mean_in_degree: float, seed: int) -> Tensor:
    """|w| of the `count` entries of a graph's square that are not candidates, drawn as `init`
    draws edge weights, from their own generator (the candidates' draws are unchanged)."""
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    if isinstance(init, core.UniformInit):
        bound = 1.0 / math.sqrt(float(init.fan))
        return torch.rand(count, generator=gen) * bound
    std = (
        init.std
        if isinstance(init, core.NormalInit)
        else math.sqrt(2.0 / mean_in_degree)  # kaiming at the budget
    )
    return (torch.randn(count, generator=gen) * std).abs_()


class GraphWiring(nn.Module):
    def __init__(self, graph: core.Graph, k: int, seed: int):
        super().__init__()
        sizes = {s.name: s.size for s in graph.sets}
        order = [s.name for s in graph.sets]
        self.targets: list[str] = []
        self.sources: list[list[str]] = []
        candidates: list[Tensor | None] = []
        offsets: dict[tuple[str, str], tuple[int, int]] = {}  # (source, target) -> (matrix, column)
        total_targets = sum(sizes[t] for t in {b.target for b in graph.blocks})
        fan_in = max(
            1.0, k / max(1, total_targets)
        )  # the mean in-degree at the budget, for `kaiming`
        for name in order:
            blocks = sorted(
                (b for b in graph.blocks if b.target == name), key=lambda b: order.index(b.source)
            )
            if not blocks:
                continue
            srcs = [b.source for b in blocks]
            cols = sum(sizes[s] for s in srcs)
            i = len(self.targets)
            self.targets.append(name)
            self.sources.append(srcs)
            w = init_edges(torch.empty(sizes[name], cols), graph.init, fan_in)
            self.register_parameter(f"w_{i}", nn.Parameter(w))
            cand = None
            col = 0
            for b in blocks:
                n = sizes[b.source]
                if b.source == b.target and not b.self_loops:
                    cand = torch.ones(sizes[name], cols, dtype=torch.bool) if cand is None else cand
                    cand[:, col : col + n].fill_diagonal_(False)
                offsets[(b.source, name)] = (i, col)
                col += n
            candidates.append(cand)
        fixed = None
        if WIRINGS[graph.wiring.method].edges_listed:
            fixed = [
                torch.zeros(getattr(self, f"w_{i}").shape, dtype=torch.bool)
                for i in range(len(self.targets))
            ]
            for src, si, dst, ti in graph.wiring.fixed:
                i, col = offsets[(src, dst)]
                fixed[i][ti, col + si] = True
        names = [f"w_{i}" for i in range(len(self.targets))]
        outside = None
        if ranks_square(graph.wiring):
            total = sum(sizes.values())
            n_cand = sum(
                int(c.sum()) if c is not None else getattr(self, f"w_{i}").numel()
                for i, c in enumerate(candidates)
            )
            outside = outside_scores(total * total - n_cand, graph.init, fan_in, seed)
        self.mask = EdgeMask(
            graph.wiring,
            k,
            self,
            names,
            candidates,
            seed=seed,
            fixed=fixed,
            outside=outside,
        )

    def weights(self) -> list[Tensor]:
        return self.mask.weights()

    def forward(self) -> tuple[Tensor, ...]:
        """The effective (masked) weight matrices, one per target set."""
        return tuple(self.mask())

    def edges(self, graph: core.Graph) -> list[tuple[str, int, str, int, float]]:
        """Active edges as (source set, index, target set, index, weight)."""
        sizes = {s.name: s.size for s in graph.sets}
        out = []
        for i, (target, srcs) in enumerate(zip(self.targets, self.sources, strict=True)):
            active = self.mask.active()[i]
            w = getattr(self, f"w_{i}").detach()
            col_set = []
            for s in srcs:
                col_set += [(s, j) for j in range(sizes[s])]
            rows, cols = torch.nonzero(active, as_tuple=True)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                s, j = col_set[c]
                out.append((s, j, target, r, float(w[r, c])))
        return out
