"""Parameters and multiply-adds counted analytically from the IR, as the paper counts them.

At the budget: a graph holds exactly k edge weights; an edge costs H x W multiply-adds at the
size of the maps it carries, spread over the candidate blocks in proportion to their candidates
(the learned distribution is only known after training: `wirelang inspect` counts it then).
Discrete time repeats the graph `steps` times; continuous time is counted per function
evaluation (the solver decides how many). Batch-norm affine parameters count as parameters;
only convolutions, linear layers and edges count as multiply-adds.

A pool's k is the one fact both this module and the compiled model read through `budget_k`
and `weights_at_budget`: members whose method ranks the pool together hold k weights between
them (counted here as shares in proportion to their candidates, exact in sum); members whose
method does not keep their own rounded share.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from wirelang import methods
from wirelang.ir import core
from wirelang.ops import get_op
from wirelang.passes.check import sparse_candidates

Pools = dict[str, core.Pool]


@dataclass
class Cost:
    params: int | Fraction = 0
    macs: int | Fraction = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.params += other.params
        self.macs += other.macs
        return self

    def rounded(self) -> Cost:
        return Cost(round(self.params), round(self.macs))


def budget_k(budget: core.Budget, candidates: int, pools: Pools) -> int:
    """The k of one learned wiring; a pool member's own share of its pool's k when pooled."""
    if not isinstance(budget, core.PooledBudget):
        return int(budget.k or 0)
    p = pools[budget.pool]
    if p.budget.k is None or not p.candidates:
        return 0
    return max(1, round(p.budget.k * candidates / p.candidates))


def weights_at_budget(
    budget: core.Budget, method: str, candidates: int, pools: Pools
) -> int | Fraction:
    """How many of a wiring's `candidates` weights count at the budget (a Fraction for a member
    of a pool ranked together: the pool's k spread in proportion to the candidates)."""
    if method == "complete":
        return candidates
    if isinstance(budget, core.PooledBudget) and methods.WIRINGS[method].pools:
        p = pools.get(budget.pool)
        if p is None or p.budget.k is None or not p.candidates:
            return 0
        return Fraction(p.budget.k * candidates, p.candidates)
    return budget_k(budget, candidates, pools)


def layer_cost(layer: core.Layer, pools: Pools | None = None) -> Cost:
    if layer.in_shape is None or layer.out_shape is None:
        return Cost()
    params, macs = get_op(layer.op).cost(layer.params, layer.in_shape, layer.out_shape)
    if layer.sparse is not None:
        cand = sparse_candidates(layer)
        k = weights_at_budget(layer.sparse.budget, layer.sparse.wiring.method, cand, pools or {})
        macs = Fraction(macs * k, cand)
        params -= cand - k
    return Cost(params, macs)


def set_cost(ns: core.NodeSet) -> Cost:
    c = Cost()
    for layer in ns.op + ns.send:
        c += layer_cost(layer)
    return c


def edge_macs(
    g: core.Graph, edges_per_block: dict[tuple[str, str], float | Fraction]
) -> float | Fraction:
    sets = {s.name: s for s in g.sets}
    total: float | Fraction = 0
    for (src, _dst), n in edges_per_block.items():
        hw = sets[src].out_hw or (1, 1)
        total += n * hw[0] * hw[1]
    return total


def graph_cost(g: core.Graph, pools: Pools) -> Cost:
    """Exact (a Fraction where a pool spreads its k); round the total, not the parts."""
    k = weights_at_budget(g.budget, g.wiring.method, g.candidates, pools)
    cand = g.candidates or 1
    per_block = {(b.source, b.target): Fraction(k * b.candidates, cand) for b in g.blocks}
    c = Cost(params=k)
    for ns in g.sets:
        c += set_cost(ns)
    c.macs = edge_macs(g, per_block) + sum(set_cost(ns).macs for ns in g.sets)
    if g.semantics.kind != "continuous":
        c.macs *= g.semantics.steps
    return c


def network_cost(net: core.Network) -> Cost:
    pools = {p.name: p for p in net.pools}
    total = Cost()
    for item in net.items:
        if isinstance(item, core.Graph):
            total += graph_cost(item, pools)
        elif isinstance(item, core.Layer):
            total += layer_cost(item, pools)
        else:
            for layer in item.branch + item.shortcut + item.after:
                total += layer_cost(layer, pools)
    return total.rounded()


def _evaluation_counts(g: core.Graph, pools: Pools) -> dict:
    """The semantics' parameters, evaluations per forward pass and the multiply-adds of one
    evaluation and of one forward pass (None where an adaptive solver decides the count)."""
    per_eval = graph_cost(g.model_copy(update={"semantics": _static(g)}), pools).rounded().macs
    n = methods.evaluations_per_forward(g.semantics)
    return {
        "semantics_params": g.semantics.parameters(),
        "evaluations_per_forward": n,
        "macs_per_evaluation": per_eval,
        "macs_per_forward": None if n is None else per_eval * n,
    }


def _static(g: core.Graph) -> core.Semantics:
    return core.StaticSemantics(span=g.semantics.span)


def summary(net: core.Network) -> dict:
    """The `wirelang compile --json` object."""
    pools = {p.name: p for p in net.pools}
    total = network_cost(net)
    graphs = []
    for g in net.graphs():
        c = graph_cost(g, pools).rounded()
        pooled = isinstance(g.budget, core.PooledBudget)
        entry = {
            "name": g.name,
            "nodes": g.size,
            "sets": [{"name": s.name, "size": s.size, "role": s.role} for s in g.sets],
            "candidate_edges": g.candidates,
            "budget": None if pooled else g.budget.k,
            "semantics": g.semantics.kind,
            "wiring": g.wiring.method,
            "params": c.params,
            "macs": c.macs,
            **_evaluation_counts(g, pools),
        }
        if pooled:
            entry["pool"] = g.budget.pool
        graphs.append(entry)
    out = {
        "name": net.name,
        "language_version": net.language_version,
        "input": [net.input.channels, net.input.height, net.input.width],
        "classes": net.classes,
        "params": total.params,
        "macs": total.macs,
        "macs_per_forward": _network_macs_per_forward(net, total.macs, graphs),
        "graphs": graphs,
        "pools": [
            {
                "name": p.name,
                "candidate_edges": p.candidates,
                "budget": p.budget.k,
                "members": p.members,
            }
            for p in net.pools
        ],
    }
    sparse = [
        {
            "path": layer.path,
            "op": layer.op,
            "candidates": sparse_candidates(layer),
            **_budget_entry(layer.sparse.budget),
            "wiring": layer.sparse.wiring.method,
        }
        for layer in net.layers()
        if layer.sparse is not None
    ]
    if sparse:
        out["sparse_layers"] = sparse
    notes = []
    if net.pools:
        notes.append(
            "pooled budgets: counts assume edges spread over the members in proportion to their candidates"
        )
    if any(g.semantics.kind == "continuous" for g in net.graphs()):
        notes.append(
            "continuous time: `macs` counts one function evaluation of the ODE; `macs_per_forward` "
            "multiplies it by the fixed-step solver's evaluations (null for adaptive solvers)"
        )
    if any(g.semantics.kind == "discrete" for g in net.graphs()):
        notes.append("discrete time: multiply-adds include every step")
    if notes:
        out["notes"] = notes
    return out


def _budget_entry(budget: core.Budget) -> dict:
    """A sparse layer's own k, or the pool it draws from (whose k is the pool's)."""
    if isinstance(budget, core.PooledBudget):
        return {"budget": None, "pool": budget.pool}
    return {"budget": budget.k, "pool": None}


def _network_macs_per_forward(net: core.Network, macs: int, graphs: list[dict]) -> int | None:
    """`macs` with each continuous graph's per-evaluation count multiplied by its evaluations."""
    extra = 0
    for entry in graphs:
        if entry["semantics"] != "continuous":
            continue
        if entry["macs_per_forward"] is None:
            return None
        extra += entry["macs_per_forward"] - entry["macs"]
    return macs + extra
