"""A trained graph at node level: its active edges as index arrays, and which nodes matter.

The backend stores a graph's edges as one weight matrix per target set; the after-training
tools need them per node: degrees (inspect), pictures (draw) and the nodes that can be removed
(compact). Nodes get global indices in set order; `offsets[set]` is a set's first index.

Two facts decide which nodes a compact model may drop, in every semantics:
- a node with no path over active edges to an output node never influences the output;
- a node that is never non-zero contributes nothing along its edges. A non-input node starts
  at 0 (discrete and continuous time) or is computed once from its inputs (static); it stays 0
  for ever if its operator maps 0 to 0 (`f(0) == 0`, checked numerically per node) and every
  node feeding it is itself never non-zero: the greatest fixed point of that rule.
Input nodes hold g(x) and are never assumed zero. Output nodes are always kept: the head reads
all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wirelang.ir import core


@dataclass
class NodeGraph:
    graph: core.Graph
    offsets: dict[str, int]
    size: int
    src: Tensor  # (E,) global index of each active edge's source node
    dst: Tensor  # (E,) its target node
    weight: Tensor  # (E,) its learned weight w (the mask is already applied: all are active)

    def set_slice(self, name: str) -> slice:
        start = self.offsets[name]
        return slice(start, start + self.graph.set(name).size)

    def role_mask(self, role: str) -> Tensor:
        out = torch.zeros(self.size, dtype=torch.bool)
        for s in self.graph.sets:
            if s.role == role:
                out[self.set_slice(s.name)] = True
        return out

    def in_degree(self) -> Tensor:
        return torch.bincount(self.dst, minlength=self.size)

    def out_degree(self) -> Tensor:
        return torch.bincount(self.src, minlength=self.size)

    def block_counts(self) -> dict[tuple[str, str], int]:
        """Active edges per (source set, target set)."""
        set_of = self.set_index()
        names = [s.name for s in self.graph.sets]
        n = len(names)
        pair = set_of[self.src] * n + set_of[self.dst]
        counts = torch.bincount(pair, minlength=n * n).view(n, n)
        return {
            (b.source, b.target): int(counts[names.index(b.source), names.index(b.target)])
            for b in self.graph.blocks
        }

    def set_index(self) -> Tensor:
        """(size,) the position of each node's set in `graph.sets`."""
        return torch.cat(
            [torch.full((s.size,), i, dtype=torch.long) for i, s in enumerate(self.graph.sets)]
        )


@torch.no_grad()
def node_graph(model, graph: core.Graph) -> NodeGraph:
    """The active edges of `graph` in a compiled (and usually trained) model."""
    wiring = model.graph_parts(graph.name).wiring
    offsets, start = {}, 0
    for s in graph.sets:
        offsets[s.name] = start
        start += s.size
    masks = wiring.mask.active()
    srcs, dsts, ws = [], [], []
    for i, (target, sources) in enumerate(zip(wiring.targets, wiring.sources, strict=True)):
        # column c of the target's matrix is node c of the concatenated source sets
        col_node = torch.cat(
            [torch.arange(offsets[s], offsets[s] + graph.set(s).size) for s in sources]
        )
        rows, cols = torch.nonzero(masks[i], as_tuple=True)
        srcs.append(col_node[cols])
        dsts.append(rows + offsets[target])
        ws.append(getattr(wiring, f"w_{i}").detach()[rows, cols].float())
    empty = torch.zeros(0, dtype=torch.long)
    return NodeGraph(
        graph,
        offsets,
        start,
        torch.cat(srcs) if srcs else empty,
        torch.cat(dsts) if dsts else empty,
        torch.cat(ws) if ws else torch.zeros(0),
    )


def edge_list(ng: NodeGraph) -> list[tuple[str, int, str, int, float]]:
    """Active edges as (source set, index, target set, index, weight), sorted by source set,
    source node, target set, target node (set order as declared)."""
    names = [s.name for s in ng.graph.sets]
    starts = torch.tensor([ng.offsets[n] for n in names])
    set_of = ng.set_index()
    key = ng.src * ng.size + ng.dst  # global indices follow set order
    order = torch.argsort(key)
    src, dst, w = ng.src[order], ng.dst[order], ng.weight[order]
    ss, ds = set_of[src], set_of[dst]
    si, di = src - starts[ss], dst - starts[ds]
    return [
        (names[a], b, names[c], d, e)
        for a, b, c, d, e in zip(
            ss.tolist(), si.tolist(), ds.tolist(), di.tolist(), w.tolist(), strict=True
        )
    ]


@torch.no_grad()
def maps_zero_to_zero(model, graph: core.Graph) -> Tensor:
    """(size,) True where the node's operator gives exactly 0 for a 0 input (f(0) == 0)."""
    parts = model.graph_parts(graph.name)
    out = []
    for s in graph.sets:
        op = parts.ops[_safe(s.name)]
        was = op.training
        op.eval()
        h, w = s.in_hw or (graph.in_shape.height, graph.in_shape.width)
        y = op(torch.zeros(1, s.size, h, w))
        op.train(was)
        out.append((y.reshape(s.size, -1) == 0).all(dim=1))
    return torch.cat(out)


def never_nonzero(ng: NodeGraph, zero_to_zero: Tensor) -> Tensor:
    """(size,) True for nodes that are 0 at every step (see the module docstring)."""
    zero = zero_to_zero & ~ng.role_mask("input")
    while True:
        fed = torch.zeros(ng.size, dtype=torch.bool)
        fed[ng.dst[~zero[ng.src]]] = True  # receives an edge from a node that can be non-zero
        nxt = zero & ~fed
        if torch.equal(nxt, zero):
            return zero
        zero = nxt


def reaches_output(ng: NodeGraph, usable: Tensor) -> Tensor:
    """(size,) True for nodes with a path of active edges to an output node, through `usable`
    nodes only (output nodes themselves count as reaching)."""
    reach = ng.role_mask("output").clone()
    keep = usable[ng.src]
    src, dst = ng.src[keep], ng.dst[keep]
    while True:
        nxt = reach.clone()
        nxt[src[reach[dst]]] = True
        if torch.equal(nxt, reach):
            return reach
        reach = nxt


def kept_nodes(model, graph: core.Graph, ng: NodeGraph | None = None) -> tuple[Tensor, Tensor]:
    """(kept, zero): the nodes a compact model computes, and those that are always 0."""
    ng = ng if ng is not None else node_graph(model, graph)
    zero = never_nonzero(ng, maps_zero_to_zero(model, graph))
    kept = (reaches_output(ng, ~zero) & ~zero) | ng.role_mask("output")
    return kept, zero


def _safe(name: str) -> str:
    from wirelang.backend.lower import safe

    return safe(name)
