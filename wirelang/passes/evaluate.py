"""Evaluate expressions: numbers, lets, arithmetic, `floor` / `ceil` / `round` and friends.

Values are Python ints, floats, bools, strings and lists, plus three wrappers: `Symbol` (a bare
word that names no variable, e.g. `dopri5` or `cifar10`), `Fraction` (`x%`) and `CallValue`
(`sgd(lr=0.1)`: a named choice with arguments). Integers stay exact; a result too large to be a
real size stops with a located error instead of allocating anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from wirelang.diagnostics import Reporter, Span, did_you_mean
from wirelang.syntax import ast

# Far beyond any network that fits in memory; keeps arithmetic on huge literals from running
# away (10^400 ^ 10^400 would never finish).
MAX_INT = 10**15


@dataclass(frozen=True)
class Symbol:
    name: str
    span: Span


@dataclass(frozen=True)
class Fraction:
    value: float


@dataclass(frozen=True)
class CallValue:
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    span: Span | None = None


class EvalError(Exception):
    """Raised after the problem was reported, to abandon the enclosing construct."""


class Failed:
    """The value of a `let` whose expression failed (already reported): using it says no more."""


FAILED = Failed()


@dataclass
class Scope:
    values: dict[str, Any]
    parent: Scope | None = None

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.values:
                return scope.values[name]
            scope = scope.parent
        raise KeyError(name)

    def names(self) -> set[str]:
        out: set[str] = set()
        scope: Scope | None = self
        while scope is not None:
            out |= set(scope.values)
            scope = scope.parent
        return out

    def child(self, values: dict[str, Any] | None = None) -> Scope:
        return Scope(dict(values or {}), self)


def _round_half_away(x: float) -> int:
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


FUNCTIONS = {
    "floor": (1, lambda x: math.floor(x)),
    "ceil": (1, lambda x: math.ceil(x)),
    "round": (1, _round_half_away),  # half away from zero, not Python's banker's rounding
    "abs": (1, abs),
    "sqrt": (1, math.sqrt),
    "min": (None, min),
    "max": (None, max),
}


def evaluate(expr: ast.Expr, scope: Scope, rep: Reporter) -> Any:
    value = _eval(expr, scope, rep)
    return value


def _check_number(value: Any, span: Span, rep: Reporter) -> Any:
    """Numbers beyond MAX_INT (floats too: `1e308` would become a 309-digit size) stop here."""
    if type(value) is int and -MAX_INT <= value <= MAX_INT:  # the commonest case, first
        return value
    if isinstance(value, float) and not math.isfinite(value):
        rep.error(
            span, "this number is too large for any size or count", "values must be at most 10^15"
        )
        raise EvalError
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > MAX_INT:
        rep.error(
            span,
            f"{Decimal(value):.3g} is too large for any size or count",
            "values must be at most 10^15",
        )
        raise EvalError
    return value


def _number(expr: ast.Expr, scope: Scope, rep: Reporter) -> int | float:
    value = _eval(expr, scope, rep)
    kind = type(value)
    if kind is int or kind is float:  # exactly a number (not a bool): the commonest case
        return value
    if isinstance(value, Symbol):
        rep.error(
            value.span, f"unknown name `{value.name}`", did_you_mean(value.name, scope.names())
        )
        raise EvalError
    if isinstance(value, bool) or not isinstance(value, int | float):
        rep.error(expr.span, f"expected a number, found {describe(value)}")
        raise EvalError
    return value


_ABSENT = object()


def _eval(expr: ast.Expr, scope: Scope, rep: Reporter) -> Any:
    # The commonest kinds by exact type (a `let`-dense spec spends most of its evaluation
    # here; a class pattern costs an isinstance and an attribute lookup per case), then the
    # rest by pattern. The node kinds are disjoint.
    kind = type(expr)
    if kind is ast.Num:
        return _check_number(expr.value, expr.span, rep)
    if kind is ast.BinOp:
        a, b = _number(expr.left, scope, rep), _number(expr.right, scope, rep)
        return _check_number(_binop(expr.op, a, b, expr, rep), expr.span, rep)
    if kind is ast.Name:
        value = scope.values.get(expr.name, _ABSENT)  # the innermost scope, without a call
        if value is _ABSENT:
            try:
                value = scope.lookup(expr.name)
            except KeyError:
                return Symbol(expr.name, expr.span)
        if value is FAILED:
            raise EvalError
        return value
    match expr:
        case ast.Num(value=v):
            return _check_number(v, expr.span, rep)
        case ast.BinOp(op=op, left=lhs, right=rhs):
            a, b = _number(lhs, scope, rep), _number(rhs, scope, rep)
            return _check_number(_binop(op, a, b, expr, rep), expr.span, rep)
        case ast.Name(name=n):
            try:
                value = scope.lookup(n)
            except KeyError:
                return Symbol(n, expr.span)
            if value is FAILED:
                raise EvalError
            return value
        case ast.Call(name=name, args=args):
            return _call(expr, name, args, scope, rep)
        case ast.Str(value=v) | ast.Bool(value=v):
            return v
        case ast.Neg(operand=o):
            return -_number(o, scope, rep)
        case ast.ListExpr(items=items):
            return [_eval(i, scope, rep) for i in items]
        case ast.Percent(value=v):
            return Fraction(_number(v, scope, rep) / 100)
    raise AssertionError(f"unknown expression {expr!r}")  # pragma: no cover


def _binop(op: str, a: int | float, b: int | float, expr: ast.BinOp, rep: Reporter) -> int | float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            rep.error(expr.right.span, "division by zero")
            raise EvalError
        return a / b
    # `^`: bound the work before doing it
    if a != 0 and abs(a) != 1 and b > 0 and b * math.log10(abs(a)) > 15:
        rep.error(
            expr.span,
            "this power is too large for any size or count",
            "values must be at most 10^15",
        )
        raise EvalError
    if a == 0 and b < 0:
        rep.error(expr.span, "zero to a negative power")
        raise EvalError
    try:
        return a**b if not (isinstance(a, int) and isinstance(b, int) and b < 0) else float(a) ** b
    except (OverflowError, ZeroDivisionError):
        rep.error(expr.span, "this power is too large")
        raise EvalError from None


def _call(expr: ast.Call, name: str, args: list[ast.Arg], scope: Scope, rep: Reporter) -> Any:
    if name not in FUNCTIONS:
        # not arithmetic: a named choice such as `sgd(lr=0.1)`, interpreted by its consumer
        positional = tuple(_eval(a.value, scope, rep) for a in args if a.name is None)
        keywords = {a.name: _eval(a.value, scope, rep) for a in args if a.name is not None}
        return CallValue(name, positional, keywords, expr.span)
    arity, fn = FUNCTIONS[name]
    if any(a.name is not None for a in args):
        rep.error(expr.span, f"`{name}` takes no keyword arguments")
        raise EvalError
    values = [_number(a.value, scope, rep) for a in args]
    if (arity is not None and len(values) != arity) or not values:
        rep.error(
            expr.span,
            f"`{name}` takes {arity or 'at least one'} argument{'s' if arity != 1 else ''}, got {len(values)}",
        )
        raise EvalError
    try:
        result = fn(*values) if arity == 1 else fn(values)
    except (ValueError, OverflowError) as err:
        rep.error(expr.span, f"`{name}` failed: {err}")
        raise EvalError from None
    return _check_number(result, expr.span, rep)


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'the string "{value}"'
    if isinstance(value, Symbol):
        return f"the name `{value.name}`"
    if isinstance(value, Fraction):
        return f"the fraction {value.value * 100:g}%"
    if isinstance(value, CallValue):
        return f"`{value.name}(...)`"
    if isinstance(value, list):
        return "a list"
    return f"{value!r}"


def to_plain(value: Any) -> Any:
    """Settings for the train block: symbols become strings, calls become dicts."""
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, Fraction):
        return value.value
    if isinstance(value, CallValue):
        if value.args:
            return {
                "name": value.name,
                "args": [to_plain(a) for a in value.args],
                **{k: to_plain(v) for k, v in value.kwargs.items()},
            }
        return {"name": value.name, **{k: to_plain(v) for k, v in value.kwargs.items()}}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value


def bind_let(item: ast.LetStmt, scope: Scope, rep: Reporter, defined: dict[str, Span]) -> None:
    """`let NAME = expr` into `scope` (FAILED after a reported error); `defined` catches repeats."""
    if item.name in defined:
        rep.error(
            item.span,
            f"`{item.name}` is already defined",
            related=[(defined[item.name], "first defined here")],
        )
        return
    defined[item.name] = item.span
    try:
        scope.values[item.name] = evaluate(item.value, scope, rep)
    except EvalError:
        scope.values[item.name] = FAILED
