"""Build one graph: its node sets, candidate edge blocks, budget, wiring and semantics.

Edge patterns over sets (a group `h[64] * 3` stands for h.1, h.2, h.3 in order):
  forward(a, b, c)   every set feeds every later set    (a->b, a->c, b->c)
  chain(a, b, c)     each set feeds the next one        (a->b, b->c)
  all(a, b)          every set feeds every set, itself included; `self_loops=true` adds u->u
  a, b -> c          every listed source feeds every listed target
"""

from __future__ import annotations

from collections.abc import Callable

from wirelang import methods
from wirelang.diagnostics import Reporter, Span, did_you_mean
from wirelang.ir import core
from wirelang.ops import ParamSpec
from wirelang.passes.bind import bind_call
from wirelang.passes.evaluate import Scope, bind_let
from wirelang.passes.items import bind_method, budget_value, count, layer, wiring_from
from wirelang.syntax import ast

PATTERNS = {"forward", "chain", "all"}
MAX_BLOCKS = 4096  # blocks of candidate edges (set pairs) per graph; each is an IR object
_PATTERN_PARAMS = (ParamSpec("self_loops", "bool", False),)


def build_graph(
    item: ast.GraphDecl,
    name: str,
    scope: Scope,
    rep: Reporter,
    spend: Callable[[Span, int], bool] | None = None,
) -> core.Graph | None:
    """`spend(span, n)` is asked before n node sets are built; False stops (the caller reports)."""
    scope = scope.child()
    sets: list[core.NodeSet] = []
    groups: dict[str, list[str]] = {}  # a name in patterns -> the sets it stands for
    declared: dict[str, Span] = {}
    singles: dict[str, ast.Node] = {}
    lets: dict[str, Span] = {}
    ok = True
    for stmt in item.body:
        if isinstance(stmt, ast.LetStmt):
            bind_let(stmt, scope, rep, lets)
        elif isinstance(stmt, ast.NodesStmt):
            ok &= _nodes(stmt, name, scope, rep, sets, groups, declared, spend)
        else:
            kind = stmt.kind if stmt.kind not in ("edges_pattern", "edges_arrow") else None
            if kind is not None:
                if kind in singles:
                    rep.error(
                        stmt.span,
                        f"a graph has one `{kind}`",
                        related=[(singles[kind].span, "the first one")],
                    )
                    ok = False
                singles[kind] = stmt
    blocks = _edges(item, groups, scope, rep)
    if blocks is None:
        ok = False
    wiring = methods.new_wiring(methods.DEFAULT_WIRING, item.span)
    if "wiring" in singles:
        wiring = wiring_from(singles["wiring"], scope, rep)
    semantics = core.StaticSemantics(span=item.span)
    if "semantics" in singles:
        semantics = _semantics(singles["semantics"], scope, rep)
    budget = None
    if "budget" in singles:
        budget = budget_value(singles["budget"].value, scope, rep)
        ok &= budget is not None
    elif wiring is not None and (
        methods.WIRINGS[wiring.method].dense or methods.WIRINGS[wiring.method].edges_listed
    ):
        pass  # resolved from the candidates or the edge list
    else:
        rep.error(
            item.span,
            f"graph `{name}` has no `budget`",
            "add `budget 1000` (edges), `budget 5%` (of the candidates) or an expression",
        )
        ok = False
    if not sets:
        rep.error(
            item.span,
            f"graph `{name}` has no node sets",
            "add `nodes in[32] input`, hidden sets and `nodes out[10] output`",
        )
        ok = False
    if not ok or wiring is None or semantics is None or blocks is None:
        return None
    if budget is None:  # complete / fixed: a placeholder count fixed by the check pass
        budget = core.CountBudget(span=item.span, count=1)
    init = _init(singles.get("init"), item.span, sets, blocks, scope, rep)
    if init is None:
        return None
    return core.Graph(
        span=item.span,
        name=name,
        sets=sets,
        blocks=blocks,
        budget=budget,
        wiring=wiring,
        semantics=semantics,
        init=init,
    )


def _init(
    stmt: ast.InitStmt | None,
    span: Span,
    sets: list[core.NodeSet],
    blocks: list[core.EdgeBlock],
    scope: Scope,
    rep: Reporter,
) -> core.Init | None:
    """The edge weights' initialisation, `uniform` over the sending nodes unless written."""
    if stmt is None:
        name, params = methods.DEFAULT_INIT, {"fan": None}
    else:
        bound = bind_method(stmt.init, methods.INITS, scope, rep, "init")
        if bound is None:
            return None
        name, params = bound
    if name == "uniform" and params.get("fan") is None:
        sources = {b.source for b in blocks}
        params["fan"] = max(1, sum(s.size for s in sets if s.name in sources))
    return core.INIT_TYPES[name](span=stmt.span if stmt is not None else span, **params)


def _nodes(
    stmt: ast.NodesStmt,
    graph: str,
    scope: Scope,
    rep: Reporter,
    sets: list,
    groups: dict,
    declared: dict,
    spend: Callable[[Span, int], bool] | None,
) -> bool:
    ok = True
    role = stmt.role or "hidden"
    op = _pipeline(stmt.op or [], scope, rep, f"{graph}.op")
    send = _pipeline(stmt.send or [], scope, rep, f"{graph}.send")
    if op is None or send is None:
        ok = False
    for decl in stmt.sets:
        if decl.name in declared:
            rep.error(
                decl.span,
                f"node set `{decl.name}` is already declared",
                related=[(declared[decl.name], "first declared here")],
            )
            ok = False
            continue
        declared[decl.name] = decl.span
        size = count(decl.size, scope, rep, "node set size", limit=None)
        n = 1 if decl.count is None else count(decl.count, scope, rep, "number of sets in a group")
        if size is not None and size < 1:
            rep.error(
                decl.size.span, f"node set `{decl.name}` needs at least one node, found {size}"
            )
            size = None
        if size is None or n is None or (spend is not None and not spend(decl.span, n)):
            groups[decl.name] = []  # known, so that edge patterns naming it add no second error
            ok = False
            continue
        names = [decl.name] if decl.count is None else [f"{decl.name}.{i}" for i in range(1, n + 1)]
        groups[decl.name] = names
        for set_name in names:
            groups.setdefault(set_name, [set_name])
            path = f"{graph}.{set_name}"
            sets.append(
                core.NodeSet(
                    span=decl.span,
                    name=set_name,
                    size=size,
                    role=role,
                    op=[
                        x.model_copy(update={"path": f"{path}.op.{i}"})
                        for i, x in enumerate(op or [])
                    ],
                    send=[
                        x.model_copy(update={"path": f"{path}.send.{i}"})
                        for i, x in enumerate(send or [])
                    ],
                )
            )
    return ok


def _pipeline(
    calls: list[ast.Call], scope: Scope, rep: Reporter, base: str
) -> list[core.Layer] | None:
    out = [layer(c, scope, rep, f"{base}.{i}", per_channel=True) for i, c in enumerate(calls)]
    for c, x in zip(calls, out, strict=True):
        if x is not None and x.sparse is not None:
            rep.error(c.span, "a node operator cannot be sparse; its edges are the learned wiring")
            return None
    return None if any(x is None for x in out) else out


def _edges(
    item: ast.GraphDecl, groups: dict[str, list[str]], scope: Scope, rep: Reporter
) -> list[core.EdgeBlock] | None:
    blocks: dict[tuple[str, str], core.EdgeBlock] = {}
    ok = True

    def resolve(name: str, span: Span) -> list[str] | None:
        if name not in groups:
            rep.error(
                span,
                f"unknown node set `{name}`",
                did_you_mean(name, [g for g in groups if "." not in g] + list(groups)),
            )
            return None
        return groups[name]

    def add(src: str, dst: str, self_loops: bool, span: Span) -> None:
        nonlocal ok
        key = (src, dst)
        if key in blocks:
            rep.error(
                span,
                f"edges `{src} -> {dst}` are already candidates",
                related=[(blocks[key].span, "declared here")],
            )
            ok = False
            return
        blocks[key] = core.EdgeBlock(span=span, source=src, target=dst, self_loops=self_loops)

    for stmt in item.body:
        if isinstance(stmt, ast.EdgesPattern):
            call = stmt.pattern
            if call.name not in PATTERNS:
                rep.error(
                    call.name_span,
                    f"unknown edge pattern `{call.name}`",
                    did_you_mean(call.name, PATTERNS) or "expected `forward`, `chain` or `all`",
                )
                ok = False
                continue
            names: list[str] = []
            for arg in call.args:
                if arg.name is None:
                    if not isinstance(arg.value, ast.Name):
                        rep.error(arg.span, "an edge pattern lists node sets by name")
                        ok = False
                        continue
                    got = resolve(arg.value.name, arg.span)
                    ok &= got is not None
                    names += got or []
            kw = ast.Call(
                span=call.span,
                name=call.name,
                name_span=call.name_span,
                args=[a for a in call.args if a.name is not None],
            )
            opts = bind_call(
                kw,
                _PATTERN_PARAMS if call.name == "all" else (),
                (),
                scope,
                rep,
                f"edge pattern `{call.name}`",
            )
            if opts is None:
                ok = False
                continue
            if len(set(names)) != len(names):
                rep.error(call.span, "a node set appears twice in this pattern")
                ok = False
                continue
            n = len(names)
            if not _room(
                len(blocks),
                {"forward": n * (n - 1) // 2, "chain": max(n - 1, 0)}.get(call.name, n * n),
                stmt.span,
                rep,
            ):
                ok = False
                continue
            if call.name == "forward":
                pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
            elif call.name == "chain":
                pairs = list(zip(names, names[1:], strict=False))
            else:
                pairs = [(a, b) for a in names for b in names]
            for a, b in pairs:
                add(a, b, bool(opts.get("self_loops")), stmt.span)
        elif isinstance(stmt, ast.EdgesArrow):
            srcs = [resolve(r.full, r.span) for r in stmt.sources]
            dsts = [resolve(r.full, r.span) for r in stmt.targets]
            if any(x is None for x in srcs + dsts):
                ok = False
                continue
            sources, targets = [n for g in srcs for n in g], [n for g in dsts for n in g]
            if not _room(len(blocks), len(sources) * len(targets), stmt.span, rep):
                ok = False
                continue
            for a in sources:
                for b in targets:
                    add(a, b, False, stmt.span)
    return list(blocks.values()) if ok else None


def _room(have: int, adding: int, span: Span, rep: Reporter) -> bool:
    if have + adding <= MAX_BLOCKS:
        return True
    rep.error(
        span,
        f"these edges connect {adding:,} pairs of node sets, more than the limit of {MAX_BLOCKS} per graph",
        "group the nodes into fewer, larger sets",
    )
    return False


def _semantics(stmt: ast.SemanticsStmt, scope: Scope, rep: Reporter) -> core.Semantics | None:
    """The typed semantics from its call bound against `methods.SEMANTICS` (which owns the
    parameters' names, defaults and ranges), or None after reporting a problem."""
    call = stmt.semantics
    bound = bind_method(call, methods.SEMANTICS, scope, rep, "semantics")
    if bound is None:
        return None
    name, params = bound
    sem = core.SEMANTICS_TYPES[name](span=stmt.span, **params)
    problem = _semantics_problem(sem)
    if problem is not None:
        rep.error(call.span, *problem)
        return None
    if (
        isinstance(sem, core.ContinuousSemantics)
        and sem.solver in methods.FIXED_STEP_SOLVERS
        and sem.step_size is None
    ):
        sem = sem.model_copy(update={"step_size": sem.time / methods.DEFAULT_FIXED_STEPS})
    return sem


def _semantics_problem(sem: core.Semantics) -> tuple[str, str] | None:
    """(message, hint) when a semantics parameter is outside what can run, else None."""
    limit = methods.MAX_STEPS
    if isinstance(sem, core.DiscreteSemantics) and sem.steps > limit:
        return (
            f"{sem.steps:,} steps are more than the limit of {limit:,}",
            "a discrete-time graph runs every step in each forward pass",
        )
    if not isinstance(sem, core.ContinuousSemantics):
        return None
    low, high = methods.TIME_RANGE
    if not low <= sem.time <= high:
        return (
            f"the integration time {sem.time:g} is outside [{low:g}, {high:g}]",
            "the paper integrates over time=1",
        )
    low, high = methods.TOLERANCE_RANGE
    for key, tol in (("rtol", sem.rtol), ("atol", sem.atol)):
        if not low <= tol <= high:
            return (
                f"`{key}` {tol:g} is outside [{low:g}, {high:g}]",
                "the paper uses rtol=1e-3, atol=1e-3",
            )
    step = sem.step_size
    if step is not None and (step <= 0 or sem.time / step > limit):
        return (
            f"step_size {step:g} makes more than {limit:,} solver steps over time {sem.time:g}",
            f"use a step_size of at least {sem.time / limit:g}",
        )
    return None
