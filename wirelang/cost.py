"""Parameters and multiply-adds counted analytically from the IR, as the paper counts them.

At the budget: a graph holds exactly k edge weights; an edge costs H x W multiply-adds at the
size of the maps it carries, spread over the candidate blocks in proportion to their candidates
(the learned distribution is only known after training: `wirelang inspect` counts it then).
Discrete time repeats the graph `steps` times; continuous time is counted per function
evaluation (the solver decides how many). Batch-norm affine parameters count as parameters;
only convolutions, linear layers and edges count as multiply-adds.

A pool's k is the one fact both this module and the compiled model read through `budget_k`
and `weights_at_budget`. A pool that allocates per member (`pool w 10% allocate=erk|uniform`)
gives each member its own k, computed once by `member_ks` (called by the check pass, stored in
`Pool.shares`). In a `global` pool, members whose method ranks the pool together
(`ranks_jointly`) hold k weights between them (counted here as shares in proportion to their
candidates, exact in sum); members whose method does not keep their own rounded share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from wirelang import methods
from wirelang.ir import core
from wirelang.ops import get_op, sparse_candidates, sparse_weight_shape

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


def ranks_jointly(budget: core.Budget, method: str, pools: Pools) -> bool:
    """Whether a wiring's weights are ranked together with its pool's other members (one top k
    over the pool): a pooled budget, a method that ranks pools (`methods.WIRINGS`) and a pool
    that allocates `global`ly. Otherwise the wiring keeps exactly its own k (`budget_k`)."""
    if not isinstance(budget, core.PooledBudget) or not methods.WIRINGS[method].pools:
        return False
    p = pools.get(budget.pool)
    return p is not None and p.allocate == "global"


def budget_k(budget: core.Budget, candidates: int, pools: Pools, member: str) -> int:
    """The k of the learned wiring `member` (a graph name or a sparse layer path): its budget's,
    or when pooled its own k of the pool's: the allocation's (`Pool.shares`), or in a global pool
    its share in proportion to its candidates (what a member that does not rank the pool keeps)."""
    if not isinstance(budget, core.PooledBudget):
        return int(budget.k or 0)
    p = pools[budget.pool]
    if member in p.shares:
        return p.shares[member]
    if p.budget.k is None or not p.candidates:
        return 0
    return max(1, round(p.budget.k * candidates / p.candidates))


def weights_at_budget(
    budget: core.Budget, method: str, candidates: int, pools: Pools, member: str
) -> int | Fraction:
    """How many of a wiring's `candidates` weights count at the budget (a Fraction for a member
    of a pool ranked together: the pool's k spread in proportion to the candidates)."""
    if methods.WIRINGS[method].dense:
        return candidates
    if ranks_jointly(budget, method, pools):
        p = pools.get(budget.pool)
        if p is None or p.budget.k is None or not p.candidates:
            return 0
        return Fraction(p.budget.k * candidates, p.candidates)
    return budget_k(budget, candidates, pools, member)


# What a per-member allocation reads of one member: for each of its parts, the dimensions ERK
# weighs and the candidates (a sparse layer is one part, its weight; a graph one per edge block).
Part = tuple[tuple[int, ...], int]


def member_parts(item: core.Graph | core.Layer) -> list[Part]:
    """A pool member's parts: a sparse layer's weight shape ((out, in) for a linear layer,
    (out, in / groups, kh, kw) for a convolution) with its size; a graph's edge blocks as
    (targets, sources) with their candidates."""
    if isinstance(item, core.Layer):
        return [(sparse_weight_shape(item), sparse_candidates(item))]
    sizes = {s.name: s.size for s in item.sets}
    return [((sizes[b.target], sizes[b.source]), b.candidates) for b in item.blocks]


def member_ks(k: int, allocate: str, members: Sequence[list[Part]]) -> list[int]:
    """Each member's own k when a pool of k allocates per member; they sum to exactly k.

    `uniform`: every member keeps the pool's fraction k / N of its own candidates. `erk`
    (Erdos-Renyi-Kernel, Evci et al. 2020, RigL): a part's density is eps x (sum of its dims) /
    (product of its dims), one eps for the whole pool; a part whose density would exceed 1 is
    made dense and eps is solved again over the rest. Both are exact rationals; the whole counts
    are then taken by largest remainder (ties to the earlier member)."""
    if allocate == "uniform":
        total = sum(n for parts in members for _, n in parts)
        exact = [Fraction(k * sum(n for _, n in parts), total or 1) for parts in members]
    elif allocate == "erk":
        exact = _erk(k, members)
    else:
        raise ValueError(f"allocation {allocate!r} does not give members their own k")
    return _largest_remainder(exact, k)


def _erk(k: int, members: Sequence[list[Part]]) -> list[Fraction]:
    parts = [
        (i, Fraction(sum(dims), math.prod(dims)), n)
        for i, member in enumerate(members)
        for dims, n in member
        if n > 0
    ]
    dense: set[int] = set()
    eps = Fraction(0)
    while True:
        rest = k - sum(parts[j][2] for j in dense)
        weighed = sum(raw * n for j, (_, raw, n) in enumerate(parts) if j not in dense)
        eps = Fraction(rest) / weighed if weighed else Fraction(0)
        # making a part dense frees budget for the rest, so eps only grows: a part over 1 stays over
        over = {j for j, (_, raw, _) in enumerate(parts) if j not in dense and eps * raw > 1}
        if not over:
            break
        dense |= over
    exact = [Fraction(0)] * len(members)
    for j, (i, raw, n) in enumerate(parts):
        exact[i] += n if j in dense else eps * raw * n
    return exact


def _largest_remainder(exact: list[Fraction], k: int) -> list[int]:
    counts = [math.floor(x) for x in exact]
    left = k - sum(counts)
    order = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[:left]:
        counts[i] += 1
    return counts


def layer_cost(layer: core.Layer, pools: Pools | None = None) -> Cost:
    if layer.in_shape is None or layer.out_shape is None:
        return Cost()
    params, macs = get_op(layer.op).cost(layer.params, layer.in_shape, layer.out_shape)
    if layer.sparse is not None:
        cand = sparse_candidates(layer)
        k = weights_at_budget(
            layer.sparse.budget, layer.sparse.wiring.method, cand, pools or {}, layer.path
        )
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
    k = weights_at_budget(g.budget, g.wiring.method, g.candidates, pools, g.name)
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
            "budget": _own_k(g.budget, g.wiring.method, g.candidates, pools, g.name),
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
                "allocate": p.allocate,
                "shares": dict(p.shares),
            }
            for p in net.pools
        ],
    }
    sparse = [
        {
            "path": layer.path,
            "op": layer.op,
            "candidates": sparse_candidates(layer),
            **_budget_entry(layer, pools),
            "wiring": layer.sparse.wiring.method,
        }
        for layer in net.layers()
        if layer.sparse is not None
    ]
    if sparse:
        out["sparse_layers"] = sparse
    notes = []
    if any(p.allocate == "global" for p in net.pools):
        notes.append(
            "pooled budgets ranked jointly: counts assume edges spread over the members in "
            "proportion to their candidates"
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


def _own_k(
    budget: core.Budget, method: str, candidates: int, pools: Pools, member: str
) -> int | None:
    """A wiring's own k in the summary; None for a member ranked jointly with its pool (the
    pool holds its k between those members, none of them a fixed number)."""
    if ranks_jointly(budget, method, pools):
        return None
    return budget_k(budget, candidates, pools, member)


def _budget_entry(layer: core.Layer, pools: Pools) -> dict:
    """A sparse layer's own k (None when ranked jointly with its pool) and its pool, if any."""
    sp = layer.sparse
    k = _own_k(sp.budget, sp.wiring.method, sparse_candidates(layer), pools, layer.path)
    return {
        "budget": k,
        "pool": sp.budget.pool if isinstance(sp.budget, core.PooledBudget) else None,
    }


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
