"""Build single IR objects from syntax: layers, counts, budgets and wiring methods."""

from __future__ import annotations

from typing import Any

from wirelang import methods
from wirelang.diagnostics import Reporter, Span, did_you_mean
from wirelang.ir import core
from wirelang.ops import get_op, list_ops
from wirelang.passes.bind import bind_call, bind_held, held_call
from wirelang.passes.evaluate import EvalError, Fraction, Scope, Symbol, describe, evaluate
from wirelang.syntax import ast

MAX_REPEAT = 10_000  # repeat counts and sets in a group: each one is expanded in Python


def count(
    expr: ast.Expr, scope: Scope, rep: Reporter, what: str, limit: int | None = MAX_REPEAT
) -> int | None:
    """A whole number >= 0 such as a repeat count (`what`: "repeat count") or a set size.

    `limit` bounds counts that cost Python work per unit; sizes (`limit=None`) cost nothing
    here and are bounded by the memory check (`wirelang.passes.limits`)."""
    try:
        v = evaluate(expr, scope, rep)
    except EvalError:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, Symbol):
        rep.error(v.span, f"unknown name `{v.name}`", did_you_mean(v.name, scope.names()))
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        rep.error(
            expr.span,
            f"a {what} must be a whole number >= 0, found {describe(v)}",
            "use floor(...), ceil(...) or round(...) to make a whole number"
            if isinstance(v, float)
            else None,
        )
        return None
    if limit is not None and v > limit:
        rep.error(expr.span, f"a {what} of {v} is more than the limit of {limit}")
        return None
    return v


def layer(
    call: ast.Call, scope: Scope, rep: Reporter, path: str, per_channel: bool = False
) -> core.Layer | None:
    spec = get_op(call.name)
    if spec is None:
        rep.error(
            call.name_span, f"unknown layer `{call.name}`", did_you_mean(call.name, list_ops())
        )
        return None
    if per_channel and not spec.per_channel:
        rep.error(
            call.name_span,
            f"`{call.name}` mixes channels and cannot be a node operator",
            "a node's operator acts on its own channel: use `dwconv(k=3)` for a convolution",
        )
        return None
    params = bind_call(call, spec.params, spec.positional, scope, rep, f"`{call.name}`")
    if params is None:
        return None
    sparse_value = params.pop("sparse", None)
    sparse = None
    if sparse_value is not None:
        budget = budget_from(sparse_value, call.span, rep)
        if budget is not None:
            sparse = core.SparseSpec(
                span=call.span,
                budget=budget,
                wiring=methods.new_wiring(methods.DEFAULT_WIRING, call.span),
            )
    return core.Layer(span=call.span, op=call.name, params=params, path=path, sparse=sparse)


def budget_from(value: Any, span: Span, rep: Reporter) -> core.Budget | None:
    if isinstance(value, Fraction):
        if not 0 < value.value <= 1:
            rep.error(
                span,
                f"a budget percentage must be above 0% and at most 100%, found {value.value * 100:g}%",
            )
            return None
        return core.FractionBudget(span=span, fraction=value.value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        hint = (
            "write floor(...), round(...) or ceil(...) for an exact count, or a percentage such as `5%`"
            if isinstance(value, float)
            else None
        )
        rep.error(span, f"a budget must be a whole number of edges, found {describe(value)}", hint)
        return None
    if value < 1:
        rep.error(span, f"a budget must be at least 1 edge, found {value}")
        return None
    return core.CountBudget(span=span, count=value)


def budget_value(value: ast.BudgetValue, scope: Scope, rep: Reporter) -> core.Budget | None:
    if isinstance(value, ast.BudgetPooled):
        return core.PooledBudget(span=value.span, pool=value.pool)
    try:
        v = evaluate(value.value, scope, rep)
    except EvalError:
        return None
    if isinstance(v, Symbol):
        rep.error(v.span, f"unknown name `{v.name}`", did_you_mean(v.name, scope.names()))
        return None
    if value.percent:
        if isinstance(v, bool) or not isinstance(v, int | float):
            rep.error(value.span, f"a percentage needs a number, found {describe(v)}")
            return None
        v = Fraction(v / 100)
    return budget_from(v, value.span, rep)


def bind_method(
    call: ast.Call, registry: dict, scope: Scope, rep: Reporter, what: str
) -> tuple[str, dict] | None:
    """Resolve `wiring m` / `semantics s` (a method named directly, or held by a let or template
    parameter) and bind its arguments; None after reporting a problem."""
    held = held_call(call, registry, scope)
    name = held.name if held is not None else call.name
    spec = registry.get(name)
    if spec is None:
        rep.error(
            held.span if held is not None else call.name_span,
            f"unknown {what} `{name}`",
            did_you_mean(name, registry),
        )
        return None
    label = f"{what.split()[-1]} `{name}`"
    if held is not None:
        params = bind_held(held, spec.params, spec.positional, scope, rep, label)
    else:
        params = bind_call(call, spec.params, spec.positional, scope, rep, label)
    return None if params is None else (name, params)


def wiring_from(stmt: ast.WiringStmt, scope: Scope, rep: Reporter) -> core.Wiring | None:
    call = stmt.method
    named = methods.WIRINGS.get(call.name)
    if named is not None and named.edges_listed and stmt.fixed is None:
        rep.error(
            call.span,
            "`wiring fixed` lists its edges in a block",
            "write `wiring fixed { in[0] -> out[1, 2] }`",
        )
        return None
    bound = bind_method(call, methods.WIRINGS, scope, rep, "wiring method")
    if bound is None:
        return None
    name, params = bound
    spec = methods.WIRINGS[name]
    if spec.edges_listed and stmt.fixed is None:  # named through a let or template parameter
        rep.error(
            call.span,
            "`wiring fixed` lists its edges in a block",
            "write `wiring fixed { in[0] -> out[1, 2] }`",
        )
        return None
    # The bound parameters (every one, defaults filled) become the method's typed fields; an
    # `implicit` one at its default is left out of the IR's data by `ir.meaning.ir_data`.
    if stmt.fixed is not None:  # the grammar gives a block to `wiring fixed` alone
        fixed: list[tuple[str, int, str, int]] = []
        spans: list[Span] = []
        for e in stmt.fixed:  # one line of a frozen export holds many targets
            src, dst, i = e.source.full, e.target.full, e.source_index
            fixed += [(src, i, dst, t) for t in e.target_indices]
            spans += [e.span] * len(e.target_indices)
        params = {**params, "fixed": fixed, "fixed_spans": spans}
    return core.WIRING_TYPES[name](span=stmt.span, **params)
