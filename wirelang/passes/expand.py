"""Expand the syntax tree into the resolved IR: lets, templates, repeats and includes disappear.

Names: top-level items are named by the spec (`graph body`, `stem`, `head`) or numbered
(`graph1`, `res3`, `layers2`); items from a template use are prefixed by the use's alias
(`use stage(...) as s1` -> `s1`, default `<template><n>`), and an unnamed graph in a template
takes the alias itself. Explicit names inside a `repeat` get `_<i>` appended. Layer paths are
`<block>.<index>`, which is what `sparse { exclude ... }` refers to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wirelang.diagnostics import Reporter, Span, did_you_mean
from wirelang.ir import core
from wirelang.passes.evaluate import (
    FAILED,
    EvalError,
    Scope,
    bind_let,
    describe,
    evaluate,
    to_plain,
)
from wirelang.passes.graph_build import build_graph
from wirelang.passes.items import budget_value, count, layer
from wirelang.passes.load import Program
from wirelang.syntax import ast

MAX_TEMPLATE_DEPTH = 16
MAX_EXPANSION = 10_000  # repeat iterations and layers built, in all: runaway repeats stop here
# `classes auto` before its count is known: the network is expanded and checked with this many
# classes (the fewest a classifier has), and the front end says the count comes from the data.
AUTO_STAND_IN = 2


@dataclass
class _Ctx:
    rep: Reporter
    templates: dict[str, ast.TemplateDecl]
    items: list = field(default_factory=list)
    names: dict[str, Span] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    pools: list[core.Pool] = field(default_factory=list)
    sparse: list[ast.SparseDecl] = field(default_factory=list)
    sparse_scope: Scope | None = None
    train: list[tuple[ast.TrainDecl, Scope]] = field(default_factory=list)
    stack: list[str] = field(default_factory=list)
    budget_spans: dict[str, Span] = field(default_factory=dict)
    expanded: int = 0

    def spend(self, span: Span, cost: int = 1) -> bool:
        """Count repeat iterations, layers and node sets; False (reported once) past MAX_EXPANSION."""
        over = self.expanded > MAX_EXPANSION
        self.expanded += cost
        if self.expanded > MAX_EXPANSION and not over:
            self.rep.error(
                span,
                f"the network expands to more than {MAX_EXPANSION:,} layers, node sets and repeat iterations",
                "use fewer or smaller repeats, fewer sets in a group (`h[n] * count`), or fewer layers",
            )
        return self.expanded <= MAX_EXPANSION

    def fresh(self, kind: str) -> int:
        self.counters[kind] = self.counters.get(kind, 0) + 1
        return self.counters[kind]

    def claim(self, name: str, span: Span) -> bool:
        if name in self.names:
            self.rep.error(
                span,
                f"`{name}` is already defined",
                related=[(self.names[name], "first defined here")],
            )
            return False
        self.names[name] = span
        return True


def expand(
    program: Program, classes: int | None = None
) -> tuple[core.Network | None, Reporter, dict]:
    """Return the network (None if unusable), the reporter, and extras for later passes.

    `classes`: the count `classes auto` stands for (unused by a spec that writes its count).
    Without it, `auto` is expanded with AUTO_STAND_IN classes and `extras["classes_auto"]` holds
    the span of `auto`, for the front end to resolve or report."""
    rep = Reporter()
    globals_ = Scope({})
    templates: dict[str, ast.TemplateDecl] = {}
    defined: dict[str, Span] = {}
    for file in program.files:
        for item in file.items:
            if isinstance(item, ast.LetStmt):
                bind_let(item, globals_, rep, defined)
            elif isinstance(item, ast.TemplateDecl):
                if item.name in templates:
                    rep.error(
                        item.span,
                        f"template `{item.name}` is already defined",
                        related=[(templates[item.name].span, "first defined here")],
                    )
                templates[item.name] = item
    networks = [i for i in program.root.items if isinstance(i, ast.NetworkDecl)]
    if not networks:
        rep.error(
            Span(path=program.root.path, line=1, col=1, end_line=1, end_col=2),
            "this file defines no `network`",
            "a spec holds one `network NAME { ... }`; files with only templates belong in specs/lib/",
        )
        return None, rep, {}
    for extra in networks[1:]:
        rep.error(
            extra.span,
            f"a spec holds one network; `{extra.name}` is a second one",
            related=[(networks[0].span, "the first network")],
        )
    decl = networks[0]
    ctx = _Ctx(rep, templates)
    scope = globals_.child()
    input_shape, input_kind, classes, auto = _header(decl, scope, rep, classes)
    scope.values.setdefault(
        "classes", FAILED if classes is None else classes
    )  # FAILED: reported once
    before = len(rep.diagnostics)
    _net_items(decl.body, scope, ctx, prefix="", in_repeat=None)
    complete = len(rep.diagnostics) == before  # no layer, graph or block was dropped
    train, train_spans = _train(ctx, rep)
    if input_shape is None or classes is None:
        return None, rep, {}
    net = core.Network(
        span=decl.span,
        name=decl.name,
        input_kind=input_kind,
        input=input_shape,
        classes=classes,
        items=ctx.items,
        pools=ctx.pools,
        train=train,
        train_spans=train_spans,
    )
    return (
        net,
        rep,
        {
            "sparse": ctx.sparse,
            "sparse_scope": ctx.sparse_scope,
            "budget_spans": ctx.budget_spans,
            "complete": complete,
            "classes_auto": auto,
        },
    )


def _header(
    decl: ast.NetworkDecl, scope: Scope, rep: Reporter, given: int | None
) -> tuple[core.Shape | None, str, int | None, Span | None]:
    """The input shape and kind, the class count, and the span of `auto` when the count was
    not given (a stand-in count is returned then)."""
    inputs = [i for i in decl.body if isinstance(i, ast.InputDecl)]
    classes_stmts = [i for i in decl.body if isinstance(i, ast.ClassesStmt)]
    shape, kind, classes = None, "image", None
    if not inputs:
        rep.error(
            decl.span,
            f"network `{decl.name}` has no `input`",
            "add `input image(channels, height, width)`",
        )
    for extra in inputs[1:]:
        rep.error(
            extra.span, "a network has one `input`", related=[(inputs[0].span, "the first one")]
        )
    if inputs:
        item = inputs[0]
        kind = item.name
        if kind != "image":
            rep.error(
                item.span,
                f"unknown input kind `{kind}`",
                "write `input image(channels, height, width)`",
            )
        dims = []
        for arg in item.args:
            try:
                v = evaluate(arg.value, scope, rep)
            except EvalError:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                rep.error(
                    arg.span, f"an input dimension must be a positive integer, found {describe(v)}"
                )
            else:
                dims.append(v)
        if len(item.args) != 3:
            rep.error(
                item.span,
                f"`input image(...)` takes channels, height and width; found {len(item.args)} values",
            )
        elif len(dims) == 3:
            shape = core.Shape(channels=dims[0], height=dims[1], width=dims[2])
    if not classes_stmts:
        rep.error(decl.span, f"network `{decl.name}` has no `classes`", "add `classes 10`")
    for extra in classes_stmts[1:]:
        rep.error(
            extra.span,
            "a network has one `classes`",
            related=[(classes_stmts[0].span, "the first one")],
        )
    value = classes_stmts[0].value if classes_stmts else None
    if isinstance(value, ast.Name) and value.name == "auto":
        # `auto` is the word, never a `let`: a count read from the data cannot be shadowed.
        if given is None:
            return shape, kind, AUTO_STAND_IN, value.span
        return shape, kind, given, None
    if value is not None:
        try:
            v = evaluate(value, scope, rep)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                rep.error(
                    value.span,
                    f"`classes` must be a positive integer, found {describe(v)}",
                    "write a count, or `classes auto` for the class folders of `data folder`",
                )
            else:
                classes = v
        except EvalError:
            pass
    return shape, kind, classes, None


def _net_items(body: list, scope: Scope, ctx: _Ctx, prefix: str, in_repeat: int | None) -> None:
    scope = scope.child()
    lets: dict[str, Span] = {}  # a name is defined once per body (it may shadow an outer one)
    for item in body:
        match item:
            case ast.InputDecl() | ast.ClassesStmt():
                if ctx.stack:  # only the network itself declares these
                    ctx.rep.error(
                        item.span, f"`{item.kind}` belongs to the network, not to a template"
                    )
            case ast.LetStmt():
                bind_let(item, scope, ctx.rep, lets)
            case ast.LayersBlock():
                _layers_block(item, scope, ctx, prefix, in_repeat)
            case ast.GraphDecl():
                _graph(item, scope, ctx, prefix, in_repeat)
            case ast.ResidualDecl():
                _residual(item, scope, ctx, prefix, in_repeat)
            case ast.RepeatDecl():
                n = count(item.count, scope, ctx.rep, "repeat count")
                for i in range(n or 0):
                    if not ctx.spend(item.span):
                        break
                    inner = scope.child({item.var: i} if item.var else {})
                    _net_items(item.body, inner, ctx, prefix, i)
            case ast.UseDecl():
                _use(item, scope, ctx, prefix, in_repeat)
            case ast.PoolDecl():
                budget = budget_value(item.budget, scope, ctx.rep)
                if budget is not None:
                    if isinstance(budget, core.PooledBudget):
                        ctx.rep.error(
                            item.budget.span,
                            "a pool's budget is a count or a percentage, not another pool",
                        )
                    elif ctx.claim(f"pool:{item.name}", item.span):
                        allocate = _allocation(item, ctx.rep)
                        ctx.pools.append(
                            core.Pool(
                                span=item.span, name=item.name, budget=budget, allocate=allocate
                            )
                        )
            case ast.SparseDecl():
                ctx.sparse.append(item)
                ctx.sparse_scope = scope
            case ast.TrainDecl():
                ctx.train.append((item, scope))


def _name(
    explicit: str | None,
    kind: str,
    ctx: _Ctx,
    prefix: str,
    in_repeat: int | None,
    default: str | None = None,
) -> str:
    if explicit is not None:
        name = explicit if in_repeat is None else f"{explicit}_{in_repeat}"
    elif default is not None:
        name = default
    else:
        name = f"{kind}{ctx.fresh(kind)}"
    return f"{prefix}{name}"


def layer_list(items: list, scope: Scope, ctx: _Ctx, base: str, start: int = 0) -> list[core.Layer]:
    out: list[core.Layer] = []
    for item in items:
        if isinstance(item, ast.LayerRepeat):
            n = count(item.count, scope, ctx.rep, "repeat count") or 0
            for i in range(n):
                if not ctx.spend(item.span):
                    break
                out += layer_list(
                    item.body,
                    scope.child({item.var: i} if item.var else {}),
                    ctx,
                    base,
                    start + len(out),
                )
            continue
        calls = item.layers if isinstance(item, ast.LayerLine) else [item]
        for call in calls:
            if not ctx.spend(call.span):
                break
            built = layer(call, scope, ctx.rep, f"{base}.{start + len(out)}")
            if built is not None:
                out.append(built)
    return out


def _layers_block(
    item: ast.LayersBlock, scope: Scope, ctx: _Ctx, prefix: str, in_repeat: int | None
) -> None:
    default = item.role if item.role in ("stem", "head") else None
    name = _name(
        item.name, "layers", ctx, prefix, in_repeat, default=default if item.name is None else None
    )
    if item.role in ("stem", "head") and item.name is not None:
        name = _name(item.name, "layers", ctx, prefix, in_repeat)
    if not ctx.claim(name, item.span):
        return
    ctx.items.extend(layer_list(item.body, scope, ctx, name))


def _residual(
    item: ast.ResidualDecl, scope: Scope, ctx: _Ctx, prefix: str, in_repeat: int | None
) -> None:
    name = _name(item.name, "res", ctx, prefix, in_repeat)
    if not ctx.claim(name, item.span):
        return
    if item.branch is None:
        ctx.rep.error(item.span, "a residual block needs a `branch { ... }`")
        return
    branch = layer_list(item.branch, scope, ctx, f"{name}.branch")
    shortcut = layer_list(item.shortcut or [], scope, ctx, f"{name}.shortcut")
    after = [
        x
        for i, c in enumerate(item.after)
        if (x := layer(c, scope, ctx.rep, f"{name}.after.{i}")) is not None
    ]
    ctx.items.append(
        core.Residual(span=item.span, name=name, branch=branch, shortcut=shortcut, after=after)
    )


def _allocation(item: ast.PoolDecl, rep: Reporter) -> str:
    """The pool's `allocate=NAME`, one of `core.ALLOCATIONS` (`global` when absent). An unknown
    name is an error; the pool is still declared, so its members report nothing more."""
    if item.allocate is None:
        return "global"
    if item.allocate in core.ALLOCATIONS:
        return item.allocate
    known = ", ".join(f"`{a}`" for a in core.ALLOCATIONS)
    rep.error(
        item.allocate_span or item.span,
        f"unknown allocation `{item.allocate}`: a pool allocates by one of {known}",
        did_you_mean(item.allocate, core.ALLOCATIONS)
        or "`global` ranks all members together; `uniform` and `erk` give each member its own k",
    )
    return "global"


def _use(item: ast.UseDecl, scope: Scope, ctx: _Ctx, prefix: str, in_repeat: int | None) -> None:
    call = item.call
    template = ctx.templates.get(call.name)
    if template is None:
        ctx.rep.error(
            call.name_span,
            f"unknown template `{call.name}`",
            did_you_mean(call.name, ctx.templates),
        )
        return
    if len(ctx.stack) >= MAX_TEMPLATE_DEPTH or call.name in ctx.stack:
        chain = " -> ".join(ctx.stack + [call.name])
        ctx.rep.error(
            item.span,
            f"template `{call.name}` uses itself ({chain})"
            if call.name in ctx.stack
            else f"templates nested deeper than {MAX_TEMPLATE_DEPTH} ({chain})",
            "templates cannot recurse",
        )
        return
    from wirelang.ops import ParamSpec

    specs = tuple(ParamSpec(p.name, "any", required=p.default is None) for p in template.params)
    values = _bind_template(call, template, specs, scope, ctx.rep)
    if values is None:
        return
    alias = item.alias if item.alias is not None else f"{call.name}{ctx.fresh('use:' + call.name)}"
    if in_repeat is not None and item.alias is not None:
        alias = f"{alias}_{in_repeat}"
    # lexical scope: the template sees global lets and its own parameters, not the caller's lets
    root = _root(scope)
    ctx.stack.append(call.name)
    inner_prefix = f"{prefix}{alias}."
    before = len(ctx.items)
    outer, ctx.rep = ctx.rep, Reporter()
    try:
        _net_items(
            template.body,
            root.child({"classes": _lookup(scope, "classes"), **values}),
            ctx,
            inner_prefix,
            None,
        )
    finally:
        inner, ctx.rep = ctx.rep, outer
        ctx.stack.pop()
    for d in inner.diagnostics:  # a problem inside the template: cite the use that made it
        outer.error(
            d.span,
            d.message,
            d.hint,
            related=[*d.related, (call.span, f"in this use of `{call.name}`")],
        )
    # An unnamed graph of a template takes the alias itself.
    graphs = [
        i
        for i in ctx.items[before:]
        if isinstance(i, core.Graph) and i.name.startswith(inner_prefix + "graph")
    ]
    if len(graphs) == 1:
        renamed = graphs[0].model_copy(update={"name": f"{prefix}{alias}"})
        ctx.items[ctx.items.index(graphs[0])] = renamed


def _root(scope: Scope) -> Scope:
    while scope.parent is not None:
        scope = scope.parent
    return scope


def _lookup(scope: Scope, name: str) -> Any:
    try:
        return scope.lookup(name)
    except KeyError:
        return None


def _bind_template(
    call: ast.Call, template: ast.TemplateDecl, specs, scope: Scope, rep: Reporter
) -> dict | None:
    names = [p.name for p in template.params]
    values: dict[str, Any] = {}
    ok = True
    for i, arg in enumerate(call.args):
        name = arg.name if arg.name is not None else (names[i] if i < len(names) else None)
        if name is None:
            n = len(names)
            rep.error(
                arg.span,
                f"template `{template.name}` takes {n} argument{'s' if n != 1 else ''}, got {len(call.args)}",
                f"its parameters: {', '.join(names)}" if names else "it takes no parameters",
            )
            ok = False
            continue
        if name not in names:
            rep.error(
                arg.span,
                f"template `{template.name}` has no parameter `{name}`",
                did_you_mean(name, names),
            )
            ok = False
            continue
        try:
            values[name] = evaluate(arg.value, scope, rep)
        except EvalError:
            ok = False
    for p in template.params:
        if p.name not in values:
            if p.default is None:
                rep.error(
                    call.span,
                    f"template `{template.name}` needs `{p.name}`",
                    related=[(p.span, "declared here")],
                )
                ok = False
            else:
                inner = Reporter()
                try:  # in the template's own scope: globals, `classes`, the parameters so far
                    values[p.name] = evaluate(
                        p.default,
                        _root(scope).child({"classes": _lookup(scope, "classes"), **values}),
                        inner,
                    )
                except EvalError:
                    ok = False
                for d in inner.diagnostics:  # a default fails for a given use: cite the use too
                    rep.error(
                        d.span,
                        d.message,
                        d.hint,
                        related=[*d.related, (call.span, f"in this use of `{template.name}`")],
                    )
    return values if ok else None


def _graph(
    item: ast.GraphDecl, scope: Scope, ctx: _Ctx, prefix: str, in_repeat: int | None
) -> None:
    name = _name(item.name, "graph", ctx, prefix, in_repeat)
    if not ctx.claim(name, item.span):
        return
    graph = build_graph(item, name, scope, ctx.rep, ctx.spend)
    if graph is not None:
        ctx.items.append(graph)


def _train(ctx: _Ctx, rep: Reporter) -> tuple[dict, dict[str, Span]]:
    settings: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    if len(ctx.train) > 1:
        rep.error(
            ctx.train[1][0].span,
            "a network has one `train` block",
            related=[(ctx.train[0][0].span, "the first one")],
        )
    for decl, scope in ctx.train[:1]:
        for entry in decl.body:
            if isinstance(entry, ast.PhaseDecl):
                if "phase2" in settings:
                    rep.error(
                        entry.span,
                        "`phase2` is given twice",
                        related=[(spans["phase2"], "first given here")],
                    )
                    continue
                phase: dict[str, Any] = {}
                for s in entry.settings:
                    _setting(s, scope, rep, phase, spans, "phase2.")
                settings["phase2"], spans["phase2"] = phase, entry.span
            else:
                _setting(entry, scope, rep, settings, spans, "")
    return settings, spans


def _setting(
    s: ast.Setting, scope: Scope, rep: Reporter, into: dict, spans: dict, prefix: str
) -> None:
    key = prefix + s.key
    if s.key in into:
        rep.error(s.key_span, f"`{s.key}` is set twice", related=[(spans[key], "first set here")])
        return
    try:
        into[s.key] = to_plain(evaluate(s.value, scope, rep))
    except EvalError:
        return
    spans[key] = s.span
