"""Check graphs and resolve budgets: candidates per block, exactly k edges, pools, fixed edges.

After this pass every graph and sparse layer has `budget.k` (or belongs to a pool whose `k`
is resolved) and every static graph is proven acyclic.
"""

from __future__ import annotations

import math

from wirelang import cost, methods
from wirelang.diagnostics import Reporter, Span, did_you_mean
from wirelang.ir import core
from wirelang.passes.shapes import topo_order


def block_candidates(block: core.EdgeBlock, sizes: dict[str, int]) -> int:
    n = sizes[block.source] * sizes[block.target]
    if block.source == block.target and not block.self_loops:
        n -= sizes[block.source]
    return n


def resolve_k(budget: core.Budget, candidates: int, what: str, rep: Reporter) -> core.Budget | None:
    if isinstance(budget, core.PooledBudget):
        return budget
    if isinstance(budget, core.FractionBudget):
        k = math.floor(budget.fraction * candidates)
        if k < 1:
            rep.error(
                budget.span,
                f"{budget.fraction * 100:g}% of the {candidates} candidates of {what} is {budget.fraction * candidates:g}, less than one edge",
                "raise the percentage or give a count",
            )
            return None
    else:
        k = budget.count
        if k > candidates:
            rep.error(
                budget.span,
                f"a budget of {k} edges is more than the {candidates} candidate edges of {what}",
                f"the budget must be between 1 and {candidates}",
            )
            return None
    return budget.model_copy(update={"k": k})


def check_graphs(net: core.Network, rep: Reporter) -> core.Network:
    items = [(_graph(i, rep) if isinstance(i, core.Graph) else i) for i in net.items]
    _warn_constant_outputs(items, rep)
    return net.model_copy(update={"items": items})


def _warn_constant_outputs(items: list, rep: Reporter) -> None:
    """Warn when a graph's output sets end in an instance norm that a global average pool reads
    next: the spatial mean of an instance-normalised map is the norm's bias, the same for every
    input, so those channels carry nothing to the classifier."""
    for g, nxt in zip(items, items[1:], strict=False):
        if not isinstance(g, core.Graph) or not isinstance(nxt, core.Layer):
            continue
        if nxt.op != "avgpool" or nxt.params.get("k") is not None:
            continue
        constant = [
            s for s in g.sets if s.role == "output" and s.op and s.op[-1].op == "instancenorm"
        ]
        if not constant:
            continue
        names = ", ".join(f"`{s.name}`" for s in constant)
        rep.warn(
            constant[0].span,
            f"the output sets {names} of graph `{g.name}` end in an instance norm and the next layer "
            "averages each whole map: the mean of an instance-normalised map is the norm's bias, so "
            "these channels do not depend on the input",
            "crop before pooling (`centercrop(3), avgpool`), or end the sets with `batchnorm`",
            related=[(nxt.span, "the global average pool")],
        )


def _graph(g: core.Graph, rep: Reporter) -> core.Graph:
    sizes = {s.name: s.size for s in g.sets}
    blocks = [b.model_copy(update={"candidates": block_candidates(b, sizes)}) for b in g.blocks]
    g = g.model_copy(update={"blocks": blocks})
    roles = {s.role for s in g.sets}
    for role in ("input", "output"):
        if role not in roles:
            rep.error(
                g.span,
                f"graph `{g.name}` has no {role} set",
                f"mark one set `{role}`: `nodes x[8] {role}`",
            )
    targets = {b.target for b in blocks}
    sources = {b.source for b in blocks}
    static = g.semantics.kind == "static"
    for s in g.sets:
        if s.role != "input" and s.name not in targets:
            rep.error(
                s.span,
                f"set `{s.name}` of graph `{g.name}` receives no candidate edges",
                "add it to an `edges` pattern",
            )
        if (
            s.role != "output" and s.name not in sources and "output" in roles
        ):  # else: "no output set"
            rep.error(
                s.span,
                f"set `{s.name}` of graph `{g.name}` sends no candidate edges, so it can never reach the output",
                "add it to an `edges` pattern",
            )
        if static and s.role == "input" and s.name in targets:
            b = next(b for b in blocks if b.target == s.name)
            rep.error(
                b.span,
                f"input set `{s.name}` receives edges (`{b.source} -> {s.name}`), but in a static graph input nodes hold g(x)",
                "leave input sets out of the targets, or use `semantics discrete(steps=...)`",
            )
    if static and topo_order(g) is None:
        b = _cycle_block(g)
        path = _path(g, b.target, b.source) or [
            b.target,
            b.source,
        ]  # a path exists: b closes a cycle
        cycle = " -> ".join([b.source, *path])
        back = (
            next(
                (
                    x
                    for x in g.blocks
                    if (x.source, x.target) == (path[0], path[1]) and x.span != b.span
                ),
                None,
            )
            if len(path) > 1
            else None
        )
        rep.error(
            b.span,
            f"a static graph must be acyclic, but edges `{b.source} -> {b.target}` close the cycle {cycle}",
            "use `forward(...)` or `chain(...)`, or `semantics discrete(steps=...)` for a cyclic graph",
            related=[(back.span, f"edges `{back.source} -> {back.target}` declared here")]
            if back is not None
            else [],
        )
    if not static:
        _warn_linear_feedback(g, rep)
    cand = g.candidates
    if cand == 0:
        rep.error(g.span, f"graph `{g.name}` has no candidate edges")
        return g
    spec = methods.WIRINGS[g.wiring.method]
    if spec.edges_listed:
        return _fixed(g, rep)
    if spec.dense:
        return g.model_copy(
            update={"budget": core.CountBudget(span=g.budget.span, count=cand, k=cand)}
        )
    budget = resolve_k(g.budget, cand, f"graph `{g.name}`", rep)
    return g.model_copy(update={"budget": budget}) if budget is not None else g


# Layers that bound a node's state whatever its input: normalisations and saturating activations.
# ReLU, convolutions and linear layers do not (they scale with their input), so a loop through
# sets applying only those is as unbounded as a loop through bare sets.
BOUNDING = frozenset({"instancenorm", "batchnorm", "tanh", "sigmoid", "relu6"})


def _warn_linear_feedback(g: core.Graph, rep: Reporter) -> None:
    """Warn about a cycle of edges through sets that nothing bounds (no norm, no saturation).

    Along such a cycle a node's state returns to it scaled by edge weights at most: a linear
    recurrence (discrete time) or a linear ODE (continuous time) that can grow without bound. The
    paper's tiny classifier with bare output nodes hit a NaN loss within 8 steps at lr 0.1 this way.
    With `wiring fixed` only the listed edges exist, so only their set pairs count.
    """
    loose = {s.name for s in g.sets if not any(layer.op in BOUNDING for layer in [*s.op, *s.send])}
    time = "discrete" if g.semantics.kind == "discrete" else "continuous"
    hint = (
        "give these nodes a normalising operator, e.g. `op(batchnorm)` (an `instancenorm` on output "
        "sets needs a `centercrop` before a global `avgpool`), or leave these edges out of the candidates"
    )

    def warn(names: list[str], what: str, chain: str, related) -> None:
        sets = ", ".join(f"`{n}`" for n in names)
        first = next(s for s in g.sets if s.name == names[0])
        rep.warn(
            first.span,
            f"in {time} time, graph `{g.name}` feeds the states of {sets} back to them through "
            f"{what} ({chain}) with no normalisation or saturating operator on the way: a "
            f"{'recurrence' if time == 'discrete' else 'differential equation'} that nothing bounds, so "
            "training can diverge",
            hint,
            related=related,
        )

    if methods.WIRINGS[g.wiring.method].edges_listed:  # only those edges exist: a node cycle?
        cycle = _node_cycle(
            [(s, i, d, j) for s, i, d, j in g.wiring.fixed or [] if s in loose and d in loose]
        )
        if cycle:
            names = sorted({s for s, _ in cycle}, key=[s for s, _ in cycle].index)
            chain = " -> ".join(f"{s}[{i}]" for s, i in [*cycle, cycle[0]])
            warn(names, "fixed edges", chain, [(g.wiring.span, "the fixed edges are listed here")])
        return
    sizes = {s.name: s.size for s in g.sets}
    inner = [b for b in g.blocks if b.source in loose and b.target in loose]
    sub = g.model_copy(update={"blocks": inner})
    for b in inner:
        if b.source == b.target:
            if not (b.self_loops or sizes[b.source] > 1):
                continue
            cycle = [b.source, b.target]
        else:
            back = _path(sub, b.target, b.source)
            if back is None:
                continue
            cycle = [b.source, *back]
        warn(
            sorted(set(cycle), key=cycle.index),
            "candidate edges",
            " -> ".join(cycle),
            [(b.span, f"edges `{b.source} -> {b.target}` declared here")],
        )
        return


def _node_cycle(edges: list[tuple[str, int, str, int]]) -> list[tuple[str, int]]:
    """One cycle of a node graph given by its edges (nodes in order), or [] when it is acyclic."""
    preds: dict[tuple[str, int], list[tuple[str, int]]] = {}
    indeg: dict[tuple[str, int], int] = {}
    succs: dict[tuple[str, int], list[tuple[str, int]]] = {}
    for s, i, d, j in edges:
        u, v = (s, i), (d, j)
        succs.setdefault(u, []).append(v)
        preds.setdefault(v, []).append(u)
        indeg[v] = indeg.get(v, 0) + 1
        indeg.setdefault(u, 0)
    ready = [n for n, k in indeg.items() if k == 0]
    while ready:  # Kahn: what is left has a predecessor left, so walking back finds a cycle
        n = ready.pop()
        for m in succs.get(n, []):
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    left = {n for n, k in indeg.items() if k > 0}
    if not left:
        return []
    seen: dict[tuple[str, int], int] = {}
    walk = [min(left)]
    while walk[-1] not in seen:
        seen[walk[-1]] = len(walk) - 1
        walk.append(next(p for p in preds[walk[-1]] if p in left))
    cycle = walk[seen[walk[-1]] : -1][::-1]  # walked backwards: reverse into edge order
    first = cycle.index(min(cycle))
    return cycle[first:] + cycle[:first]


def _cycle_block(g: core.Graph) -> core.EdgeBlock:
    """The block that closes a cycle: the first one whose removal does not need others."""
    for b in g.blocks:
        if b.source == b.target:
            return b
    for b in reversed(g.blocks):
        rest = g.model_copy(update={"blocks": [x for x in g.blocks if x is not b]})
        if topo_order(rest) is not None:
            return b
    return g.blocks[-1]


def _path(g: core.Graph, start: str, goal: str) -> list[str] | None:
    """Sets on a shortest path of blocks from `start` to `goal` (both included); None if there is none."""
    succs: dict[str, list[str]] = {}
    for b in g.blocks:
        succs.setdefault(b.source, []).append(b.target)
    came: dict[str, str | None] = {start: None}
    frontier = [start]
    while frontier and goal not in came:
        reached = []
        for u in frontier:
            for v in succs.get(u, []):
                if v not in came:
                    came[v] = u
                    reached.append(v)
        frontier = reached
    if goal not in came:
        return None
    path = [goal]
    while path[-1] != start:
        path.append(came[path[-1]])
    return path[::-1]


def _fixed(g: core.Graph, rep: Reporter) -> core.Graph:
    sizes = {s.name: s.size for s in g.sets}
    blocks = {(b.source, b.target): b for b in g.blocks}
    seen: set[tuple] = set()
    span = g.wiring.span
    fixed = g.wiring.fixed or []
    spans = (
        g.wiring.fixed_spans
        if g.wiring.fixed_spans and len(g.wiring.fixed_spans) == len(fixed)
        else None
    )
    for n, (src, i, dst, j) in enumerate(fixed):
        # A frozen export lists hundreds of thousands of edges: the valid ones cost no more
        # than the tests below (their span and text are made only for an error).
        if (
            src in sizes
            and dst in sizes
            and i < sizes[src]
            and j < sizes[dst]
            and (src, i, dst, j) not in seen
        ):
            block = blocks.get((src, dst))
            if block is not None and (src != dst or i != j or block.self_loops):
                seen.add((src, i, dst, j))
                continue
        span = spans[n] if spans else g.wiring.span  # the edge's own line when known
        where = f"`{src}[{i}] -> {dst}[{j}]`"
        if src not in sizes or dst not in sizes:
            bad = src if src not in sizes else dst
            rep.error(
                span, f"fixed edge {where}: unknown node set `{bad}`", did_you_mean(bad, sizes)
            )
            continue
        if i >= sizes[src] or j >= sizes[dst]:
            rep.error(
                span,
                f"fixed edge {where}: index out of range (`{src}` has {sizes[src]} nodes, `{dst}` has {sizes[dst]})",
            )
            continue
        block = blocks.get((src, dst))
        if block is None or (src == dst and i == j and not block.self_loops):
            rep.error(
                span,
                f"fixed edge {where} is not a candidate edge",
                "fixed edges must lie inside the declared `edges` patterns",
            )
            continue
        if (src, i, dst, j) in seen:
            rep.error(span, f"fixed edge {where} is listed twice")
        seen.add((src, i, dst, j))
    k = len(seen)
    if k == 0:
        rep.error(g.wiring.span, "`wiring fixed` lists no edges")
        return g
    budget = g.budget
    if (
        isinstance(budget, core.CountBudget)
        and budget.span != g.span
        and budget.count not in (1, k)
    ):
        rep.error(budget.span, f"the budget says {budget.count} edges but `wiring fixed` lists {k}")
    return g.model_copy(update={"budget": core.CountBudget(span=g.budget.span, count=k, k=k)})


def check_pools(net: core.Network, rep: Reporter) -> core.Network:
    """Resolve each pool's k over its members' candidates and, when the pool allocates per
    member, each member's own k (`Pool.shares`, from `cost.member_ks`)."""
    pools = {p.name: p for p in net.pools}
    members: dict[str, list[tuple[str, list[cost.Part], Span]]] = {name: [] for name in pools}
    before = len(rep.diagnostics)
    for g in net.graphs():
        if isinstance(g.budget, core.PooledBudget):
            if methods.ranks_square(g.wiring):
                rep.error(
                    g.wiring.span,
                    f"graph `{g.name}`: `dnw(rank=square)` ranks the graph's own square, so it "
                    "needs the graph's own budget, not a pool's",
                    "give the graph its own `budget`, or rank its candidates (`dnw`)",
                )
            _member(g.budget, g.name, cost.member_parts(g), pools, members, rep)
    for layer in net.layers():
        if layer.sparse is not None and isinstance(layer.sparse.budget, core.PooledBudget):
            _member(layer.sparse.budget, layer.path, cost.member_parts(layer), pools, members, rep)
    resolved = []
    unknown = len(rep.diagnostics) > before  # a misspelt pool name: its pool is not "unused"
    for p in net.pools:
        got = members[p.name]
        if not got:
            if unknown:
                continue
            rep.error(
                p.span,
                f"pool `{p.name}` is declared but nothing draws from it",
                "use `budget pooled " + p.name + "` in a graph or a sparse block",
            )
            continue
        cand = sum(n for _, parts, _ in got for _, n in parts)
        budget = resolve_k(p.budget, cand, f"pool `{p.name}`", rep)
        if budget is None:
            continue
        shares = _shares(p, budget.k, got, rep)
        if shares is not None:
            names = [m for m, _, _ in got]
            update = {"budget": budget, "members": names, "candidates": cand, "shares": shares}
            resolved.append(p.model_copy(update=update))
    return net.model_copy(update={"pools": resolved})


def _shares(
    p: core.Pool, k: int, got: list[tuple[str, list[cost.Part], Span]], rep: Reporter
) -> dict[str, int] | None:
    """Each member's own k when `p` allocates per member ({} when it ranks them jointly); None
    after an error: a member left without a single weight would be cut out of the network."""
    if p.allocate == "global":
        return {}
    ks = cost.member_ks(k, p.allocate, [parts for _, parts, _ in got])
    empty = [(name, span) for (name, _, span), n in zip(got, ks, strict=True) if n == 0]
    if empty:
        listed = ", ".join(f"`{name}`" for name, _ in empty[:12])
        more = f" and {len(empty) - 12} more" if len(empty) > 12 else ""
        rep.error(
            p.span,
            f"pool `{p.name}` allocates its {k} weights by `{p.allocate}` and leaves "
            f"{len(empty)} of its {len(got)} members without any: {listed}{more}",
            "raise the pool's budget, or give these members their own budget",
            related=[(span, f"`{name}` draws from the pool here") for name, span in empty[:3]],
        )
        return None
    return {name: n for (name, _, _), n in zip(got, ks, strict=True)}


def _member(
    budget: core.PooledBudget, name: str, parts: list[cost.Part], pools, members, rep: Reporter
) -> None:
    if budget.pool not in pools:
        rep.error(
            budget.span,
            f"unknown pool `{budget.pool}`",
            did_you_mean(budget.pool, pools) or "declare it in the network: `pool NAME 10%`",
        )
        return
    members[budget.pool].append((name, parts, budget.span))
