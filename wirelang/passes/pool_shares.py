"""What each member of a pool keeps at initialisation, and a warning when a member starves.

Members whose method ranks the pool together (`methods.WIRINGS[m].pools`) share one top k by
|w|. Their weights start at different scales: a graph's edges as its `init` says
(`methods.INITS`, resolved by `passes/graph_build.py`), a sparse conv or linear layer as
PyTorch draws it, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = inputs per output x kernel
area. A member with a larger fan-in starts smaller, and a pooled top k can leave it nothing: a
pooled 10% ResNet-18 gives its last stage's 3x3 convs almost no weights.

The expected share is exact for these distributions: the top k of n draws keeps the weights above
the threshold t where sum_i n_i P(|w_i| > t) = k, and member i keeps the fraction P(|w_i| > t)
of its weights (uniform on [-b, b]: 1 - t/b above 0; normal with deviation s: erfc(t / (s sqrt 2))).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wirelang import methods
from wirelang.cost import budget_k, ranks_jointly
from wirelang.diagnostics import Reporter, Span
from wirelang.ir import core
from wirelang.ops import sparse_candidates

# A member starves when it keeps less than this fraction of its fair share (the pool's fraction).
STARVED = 0.1


@dataclass(frozen=True)
class Member:
    name: str
    candidates: int
    kind: str  # "uniform" (bound) or "normal" (deviation)
    scale: float
    span: Span


def layer_scale(layer: core.Layer) -> float:
    """The bound of PyTorch's default U(-b, b) for a conv or linear weight: 1/sqrt(fan_in)."""
    assert layer.in_shape is not None
    if layer.op == "linear":
        fan_in = layer.in_shape.channels
    else:
        groups = layer.in_shape.channels if layer.op == "dwconv" else layer.params["groups"]
        fan_in = layer.in_shape.channels // groups * layer.params["k"] ** 2
    return 1.0 / math.sqrt(max(1, fan_in))


def graph_draw(g: core.Graph, k: int) -> tuple[str, float]:
    """How a graph's edges are drawn (`backend/wiring.init_edges`): (kind, scale)."""
    if isinstance(g.init, core.UniformInit):
        return "uniform", 1.0 / math.sqrt(float(g.init.fan))
    if isinstance(g.init, core.NormalInit):
        return "normal", g.init.std
    receiving = sum(s.size for s in g.sets if s.name in {b.target for b in g.blocks})
    return "normal", math.sqrt(2.0 / max(1.0, k / max(1, receiving)))


def _kept(m: Member, t: float) -> float:
    """The fraction of m's weights with |w| > t."""
    if m.scale <= 0:
        return 0.0
    if m.kind == "uniform":
        return max(0.0, 1.0 - t / m.scale)
    return math.erfc(t / (m.scale * math.sqrt(2.0)))


def expected_shares(members: list[Member], k: int) -> dict[str, float]:
    """Each member's expected kept fraction of its weights under one top k by |w|."""
    total = sum(m.candidates for m in members)
    if not members or k <= 0 or total == 0:
        return {m.name: 0.0 for m in members}
    if k >= total:
        return {m.name: 1.0 for m in members}
    lo, hi = 0.0, max(m.scale * (1.0 if m.kind == "uniform" else 40.0) for m in members)
    for _ in range(200):  # bisection on the threshold: kept(t) decreases in t
        mid = (lo + hi) / 2
        if sum(m.candidates * _kept(m, mid) for m in members) > k:
            lo = mid
        else:
            hi = mid
    return {m.name: _kept(m, (lo + hi) / 2) for m in members}


def pool_members(net: core.Network, pool: core.Pool) -> list[Member]:
    """The members of `pool` ranked together, with how their weights are drawn."""
    out = []
    pools = {p.name: p for p in net.pools}
    for g in net.graphs():
        b = g.budget
        if _draws_from(b, pool) and _ranks_pool(b, g.wiring.method, pools):
            kind, scale = graph_draw(g, budget_k(b, g.candidates, pools, g.name))
            out.append(Member(g.name, g.candidates, kind, scale, b.span))
    for layer in net.layers():
        sp = layer.sparse
        if (
            sp is not None
            and _draws_from(sp.budget, pool)
            and _ranks_pool(sp.budget, sp.wiring.method, pools)
            and layer.in_shape is not None
        ):
            n = sparse_candidates(layer)
            out.append(Member(layer.path, n, "uniform", layer_scale(layer), layer.span))
    return out


def _ranks_pool(budget: core.Budget, method: str, pools: dict[str, core.Pool]) -> bool:
    # Only a joint ranking can starve a member (a per-member allocation gives each its own k).
    # Two-phase methods rank the pool after training the complete network, not at initialisation.
    return ranks_jointly(budget, method, pools) and not methods.WIRINGS[method].two_phase


def warn_starved_members(net: core.Network, rep: Reporter) -> core.Network:
    """The `pool shares` pass: a warning per pool that starves members; the network unchanged."""
    for pool in net.pools:
        if pool.budget.k is None or not pool.candidates:
            continue
        members = pool_members(net, pool)
        if len(members) < 2:
            continue
        k = pool.budget.k
        fair = k / pool.candidates
        shares = expected_shares(members, k)
        starved = [m for m in members if shares[m.name] < STARVED * fair]
        if not starved:
            continue
        listed = ", ".join(f"`{m.name}` {_percent(shares[m.name])}" for m in starved[:12])
        more = f" and {len(starved) - 12} more" if len(starved) > 12 else ""
        rep.warn(
            pool.span,
            f"pool `{pool.name}` ranks its members' weights together, and at initialisation "
            f"{len(starved)} of its {len(members)} members are expected to keep less than a tenth "
            f"of the pool's {_percent(fair)}: {listed}{more} (their initial weights are smaller, "
            "so few of them rank in the top k)",
            "if each member should keep its own share, give members their own budget "
            f"({_own_budget(pool)} instead of `budget pooled {pool.name}`) or allocate the pool "
            f"per member (`pool {pool.name} {_pool_budget(pool)} allocate=uniform`, or "
            "`allocate=erk` for RigL's Erdos-Renyi-Kernel densities)",
            related=[(m.span, f"`{m.name}` draws from the pool here") for m in starved[:3]],
        )
    return net


def _draws_from(budget: core.Budget, pool: core.Pool) -> bool:
    return isinstance(budget, core.PooledBudget) and budget.pool == pool.name


def _pool_budget(pool: core.Pool) -> str:
    if isinstance(pool.budget, core.FractionBudget):
        return f"{100 * pool.budget.fraction:g}%"
    return str(pool.budget.count)


def _own_budget(pool: core.Pool) -> str:
    if isinstance(pool.budget, core.FractionBudget):
        return f"`budget {100 * pool.budget.fraction:g}%`"
    return "a count or a percentage of each member's own weights"


def _percent(x: float) -> str:
    return f"{100 * x:.2g}%" if x >= 0.001 else f"{100 * x:.1g}%" if x > 0 else "0%"
