"""Parameters and multiply-adds counted analytically from the IR, as the paper counts them.

At the budget: a graph holds exactly k edge weights; an edge costs H x W multiply-adds at the
size of the maps it carries, spread over the candidate blocks in proportion to their candidates
(the learned distribution is only known after training: `wirelang inspect` counts it then).
Discrete time repeats the graph `steps` times; continuous time is counted per function
evaluation (the solver decides how many). Batch-norm affine parameters count as parameters;
only convolutions, linear layers and edges count as multiply-adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from wirelang.ir import core
from wirelang.ops import get_op
from wirelang.passes.check import sparse_candidates


@dataclass
class Cost:
    params: int = 0
    macs: int = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.params += other.params
        self.macs += other.macs
        return self


def layer_cost(layer: core.Layer) -> Cost:
    if layer.in_shape is None or layer.out_shape is None:
        return Cost()
    params, macs = get_op(layer.op).cost(layer.params, layer.in_shape, layer.out_shape)
    if layer.sparse is not None and layer.sparse.budget.k is not None:
        cand = sparse_candidates(layer)
        k = layer.sparse.budget.k
        if layer.sparse.wiring.method == "complete":
            k = cand
        macs = macs * k // cand
        params -= cand - k
    return Cost(params, macs)


def set_cost(ns: core.NodeSet) -> Cost:
    c = Cost()
    for layer in ns.op + ns.send:
        c += layer_cost(layer)
    return c


def edge_macs(g: core.Graph, edges_per_block: dict[tuple[str, str], float]) -> float:
    sets = {s.name: s for s in g.sets}
    total = 0.0
    for (src, _dst), n in edges_per_block.items():
        hw = sets[src].out_hw or (1, 1)
        total += n * hw[0] * hw[1]
    return total


def graph_k(g: core.Graph, pools: dict[str, core.Pool]) -> float:
    if g.budget.kind == "pooled":
        pool = pools.get(g.budget.pool)
        if pool is None or pool.budget.k is None or not pool.candidates:
            return 0.0
        return pool.budget.k * g.candidates / pool.candidates
    return float(g.budget.k or 0)


def graph_cost(g: core.Graph, pools: dict[str, core.Pool]) -> Cost:
    k = graph_k(g, pools)
    cand = g.candidates or 1
    per_block = {(b.source, b.target): k * b.candidates / cand for b in g.blocks}
    c = Cost(params=round(k))
    for ns in g.sets:
        c += set_cost(ns)
    macs = edge_macs(g, per_block) + sum(set_cost(ns).macs for ns in g.sets)
    c.macs = round(macs)
    if g.semantics.kind == "discrete":
        c.macs *= g.semantics.params["steps"]
    return c


def network_cost(net: core.Network) -> Cost:
    pools = {p.name: p for p in net.pools}
    total = Cost()
    for item in net.items:
        if isinstance(item, core.Graph):
            total += graph_cost(item, pools)
        elif isinstance(item, core.Layer):
            total += layer_cost(item)
        else:
            for layer in item.branch + item.shortcut + item.after:
                total += layer_cost(layer)
    return total


def summary(net: core.Network) -> dict:
    """The `wirelang compile --json` object."""
    pools = {p.name: p for p in net.pools}
    total = network_cost(net)
    graphs = []
    for g in net.graphs():
        c = graph_cost(g, pools)
        entry = {
            "name": g.name,
            "nodes": g.size,
            "sets": [{"name": s.name, "size": s.size, "role": s.role} for s in g.sets],
            "candidate_edges": g.candidates,
            "budget": None if g.budget.kind == "pooled" else g.budget.k,
            "semantics": g.semantics.kind,
            "wiring": g.wiring.method,
            "params": c.params,
            "macs": c.macs,
        }
        if g.budget.kind == "pooled":
            entry["pool"] = g.budget.pool
        graphs.append(entry)
    out = {
        "name": net.name,
        "language_version": net.language_version,
        "input": [net.input.channels, net.input.height, net.input.width],
        "classes": net.classes,
        "params": total.params,
        "macs": total.macs,
        "graphs": graphs,
        "pools": [{"name": p.name, "candidate_edges": p.candidates, "budget": p.budget.k, "members": p.members} for p in net.pools],
    }
    sparse = [
        {"path": layer.path, "op": layer.op, "candidates": sparse_candidates(layer), "budget": layer.sparse.budget.k,
         "pool": layer.sparse.budget.pool, "wiring": layer.sparse.wiring.method}
        for layer in net.layers() if layer.sparse is not None
    ]
    if sparse:
        out["sparse_layers"] = sparse
    notes = []
    if net.pools:
        notes.append("pooled budgets: counts assume edges spread over the members in proportion to their candidates")
    if any(g.semantics.kind == "continuous" for g in net.graphs()):
        notes.append("continuous time: multiply-adds are per function evaluation of the ODE")
    if any(g.semantics.kind == "discrete" for g in net.graphs()):
        notes.append("discrete time: multiply-adds include every step")
    if notes:
        out["notes"] = notes
    return out
