"""Bind a call's arguments to a parameter list (ops, wirings, semantics) with located errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wirelang.diagnostics import Reporter, Span, did_you_mean
from wirelang.ops import ParamSpec
from wirelang.passes.evaluate import (
    CallValue,
    EvalError,
    Fraction,
    Scope,
    Symbol,
    describe,
    evaluate,
)
from wirelang.syntax import ast


def bind_call(
    call: ast.Call,
    params: tuple[ParamSpec, ...],
    positional: tuple[str, ...],
    scope: Scope,
    rep: Reporter,
    what: str,
) -> dict[str, Any] | None:
    """Evaluate `call`'s arguments against `params`; None (after reporting) on any problem."""
    args = [
        (arg.name, arg.span, arg.value.span, lambda a=arg: evaluate(a.value, scope, rep))
        for arg in call.args
    ]
    return _bind(args, call, params, positional, scope, rep, what)


def held_call(call: ast.Call, known: dict, scope: Scope) -> CallValue | None:
    """`wiring method` where `method` is a let or template parameter holding a method, such as
    `dnw` or `targeted_dropout(rho=0.95)`: that method. None when `call` names a method itself."""
    if call.name in known or call.has_parens or call.args:
        return None
    try:
        value = scope.lookup(call.name)
    except KeyError:
        return None
    if isinstance(value, Symbol):
        return CallValue(value.name, (), {}, value.span)
    return value if isinstance(value, CallValue) else None


def bind_held(
    held: CallValue,
    params: tuple[ParamSpec, ...],
    positional: tuple[str, ...],
    scope: Scope,
    rep: Reporter,
    what: str,
) -> dict[str, Any] | None:
    """`bind_call` for a method held by a variable: its arguments are already evaluated."""
    span = held.span
    args = [(None, span, span, lambda v=v: v) for v in held.args] + [
        (k, span, span, lambda v=v: v) for k, v in held.kwargs.items()
    ]
    call = ast.Call(span=span, name=held.name, name_span=span, has_parens=bool(args))
    return _bind(args, call, params, positional, scope, rep, what)


def _bind(
    args: list[
        tuple[str | None, Span, Span, Callable[[], Any]]
    ],  # (name or None, span, value span, value)
    call: ast.Call,
    params: tuple[ParamSpec, ...],
    positional: tuple[str, ...],
    scope: Scope,
    rep: Reporter,
    what: str,
) -> dict[str, Any] | None:
    values: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    given: set[str] = set()  # given, even if with a bad value: not also "missing"
    ok = True
    by_name = {p.name: p for p in params}
    next_pos = 0
    for arg_name, arg_span, value_span, get in args:
        if arg_name is None:
            if next_pos >= len(positional):
                rep.error(
                    arg_span,
                    f"{what} takes {_count(len(positional))} positional argument{'s' if len(positional) != 1 else ''}",
                    ("write it as `name=value`; parameters: " + ", ".join(by_name))
                    if by_name
                    else f"{what} takes no arguments",
                )
                ok = False
                continue
            name = positional[next_pos]
            next_pos += 1
        else:
            name = arg_name
            if name not in by_name:
                rep.error(
                    arg_span,
                    f"{what} has no parameter `{name}`",
                    did_you_mean(name, by_name)
                    or ("it takes no parameters" if not by_name else None),
                )
                ok = False
                continue
        if name in values:
            rep.error(
                arg_span, f"`{name}` is given twice", related=[(spans[name], "first given here")]
            )
            ok = False
            continue
        given.add(name)
        try:
            value = get()
        except EvalError:
            ok = False
            continue
        converted = convert(value, by_name[name], value_span, rep, scope)
        if converted is _BAD:
            ok = False
            continue
        values[name], spans[name] = converted, arg_span
    for p in params:
        if p.name not in values:
            if p.name in given:
                continue
            if p.required:
                rep.error(
                    call.span,
                    f"{what} needs `{p.name}`",
                    f"write `{call.name}({p.name}=...)`"
                    if p.name not in positional
                    else f"write `{call.name}(<{p.name}>)`",
                )
                ok = False
            else:
                values[p.name] = p.default
    return values if ok else None


_BAD = object()


def _count(n: int) -> str:
    return {0: "no", 1: "one", 2: "two", 3: "three"}.get(n, str(n))


def convert(value: Any, p: ParamSpec, span: Span, rep: Reporter, scope: Scope) -> Any:
    kind = p.type.rstrip("?")
    if p.type.endswith("?") and value is None:
        return None
    if isinstance(value, Symbol) and kind != "str":
        rep.error(
            value.span, f"unknown name `{value.name}`", did_you_mean(value.name, scope.names())
        )
        return _BAD
    if kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            rep.error(
                span,
                f"`{p.name}` must be an integer, found {describe(value)}",
                "use floor(...), ceil(...) or round(...) to make a whole number"
                if isinstance(value, float)
                else None,
            )
            return _BAD
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            rep.error(span, f"`{p.name}` must be a number, found {describe(value)}")
            return _BAD
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            rep.error(span, f"`{p.name}` must be `true` or `false`, found {describe(value)}")
            return _BAD
    elif kind == "str":
        value = value.name if isinstance(value, Symbol) else value
        if not isinstance(value, str):
            rep.error(
                span,
                f"`{p.name}` must be a name, found {describe(value)}",
                ("one of: " + ", ".join(p.choices)) if p.choices else None,
            )
            return _BAD
        if p.choices and value not in p.choices:
            rep.error(span, f"`{p.name}` cannot be `{value}`", did_you_mean(value, p.choices))
            return _BAD
        return value
    elif kind == "budget":
        return (
            value
            if isinstance(value, Fraction | int | float) and not isinstance(value, bool)
            else _bad(span, p, value, rep)
        )
    if p.minimum is not None and value < p.minimum:
        rep.error(span, f"`{p.name}` must be at least {p.minimum:g}, found {value:g}")
        return _BAD
    if p.name in ("rho", "p") and value > 1:
        rep.error(span, f"`{p.name}` is a probability and must be at most 1, found {value:g}")
        return _BAD
    return value


def _bad(span: Span, p: ParamSpec, value: Any, rep: Reporter) -> Any:
    rep.error(
        span, f"`{p.name}` must be a budget (a count or a percentage), found {describe(value)}"
    )
    return _BAD


def call_to_value(value: Any) -> CallValue | None:
    return value if isinstance(value, CallValue) else None
