"""Bulk lines of a spec read without lark: `let NAME = expr` and fixed edges `a[i] -> b[j, k]`.

lark's LALR parser costs several microseconds per token in pure Python, which holds the front end
to a few hundred KB/s; the bulk of a large spec (a frozen export's tens of thousands of fixed
edges, a long list of `let`s) is made of whole lines of two simple forms. `scan` reads those lines
with regular expressions and a small expression parser, builds their syntax nodes with the spans
lark would give them, and blanks them (each keeps its indentation and its newline, so every other
token keeps its line and column). lark then parses the blanked text, which holds the structure,
and `graft` puts the claimed statements back into the tree, in source order.

This never changes what the language accepts. A line is claimed only when it is exactly one such
statement (no comment, no line continuation before it, nothing unusual in it); anything else is
left to lark. The blanked text parses whenever the original does, and `graft` refuses (raises
`Unclaimable`) when a claimed line is not where its statement may stand (a `let` inside `layers`,
an edge outside `wiring fixed`) or would nest too deep; the caller then parses the original text
with lark alone, so every error keeps its exact message and place.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from wirelang.diagnostics import Span
from wirelang.syntax import ast

_WS = r"[\t \f]*"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
# At most 15 digits: longer indices are an error that lark's path reports (see `_Build._index`).
_INT = r"[0-9]{1,15}"

# `src[.member][i] -> dst[.member][j, k, ...]`, alone on its line.
_EDGE = re.compile(
    rf"({_WS})({_NAME})(?:{_WS}\.{_WS}({_INT}))?{_WS}\[{_WS}({_INT}){_WS}\]{_WS}->{_WS}"
    rf"({_NAME})(?:{_WS}\.{_WS}({_INT}))?{_WS}\[{_WS}({_INT}(?:{_WS},{_WS}{_INT})*){_WS}\]{_WS}$"
)
_DIGITS = re.compile(r"[0-9]+")
_LET = re.compile(rf"({_WS})let(?![A-Za-z0-9_]){_WS}({_NAME}){_WS}={_WS}")

# The tokens of an expression, each with the blanks before it. Strings with escapes and numbers
# of more than 300 characters are left to lark (which unescapes them or reports them); so is
# any character not listed here.
_TOKENS = re.compile(
    r"([\t \f]*)(?:"
    r"((?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    rf"|({_NAME})"
    r'|("[^"\\\n]*")'
    r"|([-+*/^()\[\],=%]))"
)
_KEYWORDS = ("true", "false")
_NESTING = ("(", "[", "-", "^")

# Deeper expressions are left to lark and its depth check (`parse.MAX_TREE_DEPTH`).
_MAX_EXPR_DEPTH = 60


class Unclaimable(Exception):
    """A claimed line is not where its statement may stand: parse the original text instead."""


class TooManyTokens(Exception):
    """The claimed lines hold more tokens than the caller allows; the first line past it."""

    def __init__(self, line: int, col: int):
        super().__init__(f"line {line}")
        self.line, self.col = line, col


@dataclass
class Claim:
    """One statement read without lark: its line, its node, and its depth in lark's tree."""

    line: int
    node: ast.LetStmt | ast.FixedEdge
    depth: int


def _span(path: str, line: int, col: int, end: int) -> Span:
    return Span(path=path, line=line, col=col, end_line=line, end_col=end)


# The nodes of `let` lines built without their dataclass __init__ (keyword arguments, then one
# object.__setattr__ per field through a global lookup), which was the larger part of reading a
# `let` line: the same object.__setattr__ calls on a bare object, about twice as fast, and the
# same object (equal field for field: `tests/test_frontend_bulk.py` compares the trees with
# lark's; the same size: the instance keeps its values inline, no __dict__ is made). The field
# lists are checked against the classes here, so that a new field fails at import.
_NEW = object.__new__
_SET = object.__setattr__
_SPAN_SET = tuple(getattr(Span, f).__set__ for f in ("path", "line", "col", "end_line", "end_col"))
_FIELDS = {
    ast.Num: ("span", "kind", "value", "text"),
    ast.Name: ("span", "kind", "name"),
    ast.BinOp: ("span", "kind", "op", "left", "right"),
    ast.Neg: ("span", "kind", "operand"),
    ast.LetStmt: ("span", "kind", "name", "value"),
}
for _cls, _names in _FIELDS.items():
    if tuple(f.name for f in dataclasses.fields(_cls)) != _names or hasattr(_cls, "__post_init__"):
        raise AssertionError(f"fast.py builds {_cls.__name__} with the fields {_names}")
if Span.__slots__ != ("path", "line", "col", "end_line", "end_col"):
    raise AssertionError("fast.py builds Span with other fields")


def _spans(path: str, line: int):
    """`at(col, end_col)`: a span on this line (1-based columns, end exclusive)."""
    set_path, set_line, set_col, set_end_line, set_end_col = _SPAN_SET

    def at(col: int, end: int) -> Span:
        s = _NEW(Span)
        set_path(s, path)
        set_line(s, line)
        set_col(s, col)
        set_end_line(s, line)
        set_end_col(s, end)
        return s

    return at


def _num(span: Span, value: int | float, text: str) -> ast.Num:
    node = _NEW(ast.Num)
    _SET(node, "span", span)
    _SET(node, "kind", "num")
    _SET(node, "value", value)
    _SET(node, "text", text)
    return node


def _name(span: Span, name: str) -> ast.Name:
    node = _NEW(ast.Name)
    _SET(node, "span", span)
    _SET(node, "kind", "name")
    _SET(node, "name", name)
    return node


def _binop(span: Span, op: str, left, right) -> ast.BinOp:
    node = _NEW(ast.BinOp)
    _SET(node, "span", span)
    _SET(node, "kind", "binop")
    _SET(node, "op", op)
    _SET(node, "left", left)
    _SET(node, "right", right)
    return node


def _neg(span: Span, operand) -> ast.Neg:
    node = _NEW(ast.Neg)
    _SET(node, "span", span)
    _SET(node, "kind", "neg")
    _SET(node, "operand", operand)
    return node


def _set_ref(path: str, line: int, start: int, name: str, member: str | None, end: int):
    return ast.SetRef(
        span=_span(path, line, start + 1, end + 1),
        name=name,
        member=None if member is None else int(member),
    )


def _edge(m: re.Match, path: str, line: int) -> ast.FixedEdge:
    # A set reference ends after its member, or its name when it has none.
    src_end = m.end(3) if m.group(3) is not None else m.end(2)
    dst_end = m.end(6) if m.group(6) is not None else m.end(5)
    close = m.string.rindex("]")
    return ast.FixedEdge(
        span=_span(path, line, m.start(2) + 1, close + 2),
        source=_set_ref(path, line, m.start(2), m.group(2), m.group(3), src_end),
        source_index=int(m.group(4)),
        target=_set_ref(path, line, m.start(5), m.group(5), m.group(6), dst_end),
        target_indices=[int(x) for x in _DIGITS.findall(m.group(7))],
    )


class _NoClaim(Exception):
    """This line is not one the fast path reads; lark will."""


class _Expr:
    """A recursive-descent reader of one line's expression, mirroring `grammars/wire.lark`'s
    `expr` rules. Each `_x` method returns (node, start, end, depth): start and end are the
    0-based columns of its container (its outermost parentheses, which lark's positions count
    for the node that holds it), depth its height in lark's tree."""

    def __init__(self, text: str, start: int, path: str, line: int, most: int):
        self.path, self.line = path, line
        self.at = _spans(path, line)
        self.toks: list[tuple[str, str, int, int]] = []
        end = len(text.rstrip(" \t\f"))
        pos, nesting = start, 0
        if end - start > most:  # it may hold more than `most` tokens: counted before it is read
            for i, m in enumerate(_TOKENS.finditer(text, start, end)):
                if i >= most:
                    raise TooManyTokens(line, m.end(1) + 1)
        # findall skips what no token matches: then the tokens do not reach the end.
        for ws, num, name, string, op in _TOKENS.findall(text, start, end):
            pos += len(ws)
            if num:
                if len(num) > 300:
                    raise _NoClaim
                kind, value = "num", num
            elif name:
                value = name
                kind = name if name in _KEYWORDS else "name"
            elif string:
                kind, value = "str", string
            else:
                kind = value = op
                # Each bracket, minus sign or power nests the reader a few Python frames
                # deeper: a line with many is left to lark, far from the recursion limit.
                nesting += op in _NESTING
            self.toks.append((kind, value, pos, pos + len(value)))
            pos += len(value)
        if pos != end or nesting > 100:
            raise _NoClaim
        self.toks.append(("$end", "", end, end))
        self.i = 0

    def take(self, kind: str) -> tuple[str, str, int, int]:
        tok = self.toks[self.i]
        if tok[0] != kind:
            raise _NoClaim
        self.i += 1
        return tok

    def whole(self):
        out = self.expr()
        if self.toks[self.i][0] != "$end":
            raise _NoClaim
        return out

    def expr(self):
        left = self.product()
        while self.toks[self.i][0] in ("+", "-"):
            op = self.toks[self.i][0]
            self.i += 1
            right = self.product()
            left = self.binop(op, left, right)
        return left

    def product(self):
        left = self.unary()
        while self.toks[self.i][0] in ("*", "/"):
            op = self.toks[self.i][0]
            self.i += 1
            right = self.unary()
            left = self.binop(op, left, right)
        return left

    def binop(self, op: str, left, right):
        node, start, _, d1 = left
        rnode, _, end, d2 = right
        depth = 1 + max(d1, d2)
        if depth > _MAX_EXPR_DEPTH:
            raise _NoClaim
        return _binop(self.at(start + 1, end + 1), op, node, rnode), start, end, depth

    def unary(self):
        if self.toks[self.i][0] == "-":
            start = self.toks[self.i][2]
            self.i += 1
            node, _, end, d = self.unary()
            if d + 1 > _MAX_EXPR_DEPTH:
                raise _NoClaim
            return _neg(self.at(start + 1, end + 1), node), start, end, d + 1
        base = self.atom()
        if self.toks[self.i][0] == "^":
            self.i += 1
            return self.binop("^", base, self.unary())
        return base

    def atom(self):
        kind, value, start, end = self.toks[self.i]
        self.i += 1
        if kind == "num":
            return _num(self.at(start + 1, end + 1), number_value(value), value), start, end, 1
        if kind == "str":
            return (
                ast.Str(span=self.at(start + 1, end + 1), value=value[1:-1]),
                start,
                end,
                1,
            )
        if kind in ("true", "false"):
            return (
                ast.Bool(span=self.at(start + 1, end + 1), value=kind == "true"),
                start,
                end,
                1,
            )
        if kind == "name":
            if self.toks[self.i][0] != "(":
                return _name(self.at(start + 1, end + 1), value), start, end, 1
            self.i += 1
            args, depth = ([], 1) if self.toks[self.i][0] == ")" else self.args()
            close = self.take(")")[3]
            call = ast.Call(
                span=self.at(start + 1, close + 1),
                name=value,
                name_span=self.at(start + 1, end + 1),
                args=args,
            )
            return call, start, close, depth
        if kind == "[":
            items, depth = [], 0
            if self.toks[self.i][0] != "]":
                while True:
                    node, _, _, d = self.expr()
                    items.append(node)
                    depth = max(depth, d)
                    if self.toks[self.i][0] != ",":
                        break
                    self.i += 1
            close = self.take("]")[3]
            return (
                ast.ListExpr(span=self.at(start + 1, close + 1), items=items),
                start,
                close,
                1 + depth,
            )
        if kind == "(":
            node, _, _, depth = self.expr()
            close = self.take(")")[3]
            return node, start, close, depth  # parentheses widen the container only
        raise _NoClaim

    def args(self) -> tuple[list[ast.Arg], int]:
        """`arg ("," arg)*` and the depth of the `func` node above them (func, args, arg,
        value, then the expression)."""
        out, depth = [], 0
        while True:
            kind, value, start, _ = self.toks[self.i]
            name = None
            if kind == "name" and self.toks[self.i + 1][0] == "=":
                name = value
                self.i += 2
            node, vstart, end, d = self.expr()
            if self.toks[self.i][0] == "%":
                end = self.toks[self.i][3]
                self.i += 1
                node = ast.Percent(span=self.at(vstart + 1, end + 1), value=node)
            out.append(
                ast.Arg(
                    span=self.at((start if name else vstart) + 1, end + 1),
                    name=name,
                    value=node,
                )
            )
            depth = max(depth, d)
            if self.toks[self.i][0] != ",":
                break
            self.i += 1
        return out, depth + 4


def number_value(text: str) -> int | float:
    """A NUMBER token's value (the builder's rule; its length is checked there)."""
    if "." in text or "e" in text or "E" in text:
        return float(text)
    return int(text)


def _let(m: re.Match, text: str, path: str, line: int, most: int) -> tuple[Claim, int]:
    """The claim of a `let` line and its tokens (`let`, the name, `=`, the expression's and the
    line end); TooManyTokens if that is more than `most`."""
    indent = len(m.group(1))
    reader = _Expr(text, m.end(), path, line, most - 3)
    node, _, end, depth = reader.whole()
    tokens = len(reader.toks) - 1 + 4  # not `$end`
    if tokens > most:  # the line end is the one too many
        raise TooManyTokens(line, end + 1)
    stmt = _NEW(ast.LetStmt)
    _SET(stmt, "span", reader.at(indent + 1, end + 1))
    _SET(stmt, "kind", "let")
    _SET(stmt, "name", m.group(2))
    _SET(stmt, "value", node)
    return Claim(line, stmt, depth + 1), tokens


def scan(text: str, path: str, max_tokens: int) -> tuple[str, list[Claim], int]:
    """The text with every claimed line blanked, the claims in line order, and the tokens the
    claimed lines hold (as `parse._TOKEN` counts them, a set member as two); raises
    TooManyTokens at the line that takes them past `max_tokens`, before reading it whole."""
    if "\r" in text or ("->" not in text and "let" not in text):
        return text, [], 0
    if not text.endswith("\n"):  # as lark's caller ends it: a claimed last line is not the end
        text += "\n"
    lines = text.split("\n")
    claims: list[Claim] = []
    used = 0
    continued = False  # the line before ended in `\`: this one continues its statement
    for i, raw in enumerate(lines):
        was_continued, continued = continued, raw.rstrip(" \t\f").endswith("\\")
        if was_continued or continued or "#" in raw:
            continue
        if "->" in raw:
            m = _EDGE.match(raw)
            if m is None:
                continue
            # `src [ i ] -> dst [`, the targets and commas, `]`, the line end: counted before
            # the targets are read
            tokens = 7 + 2 * m.group(7).count(",") + 1 + 2
            tokens += 2 * (m.group(3) is not None) + 2 * (m.group(6) is not None)
            if used + tokens > max_tokens:
                raise TooManyTokens(i + 1, len(m.group(1)) + 1)
            claims.append(Claim(i + 1, _edge(m, path, i + 1), 2))  # fixed_edge, set_ref
        else:
            m = _LET.match(raw)
            if m is None:
                continue
            try:
                claim, tokens = _let(m, raw, path, i + 1, max_tokens - used)
            except _NoClaim:
                continue
            claims.append(claim)
        used += tokens
        lines[i] = m.group(1)
    if not claims:
        return text, [], 0
    return "\n".join(lines), claims, used


# Where a claimed statement may stand: the nodes whose body holds it, and the field.
_LET_BODIES = (ast.NetworkDecl, ast.TemplateDecl, ast.RepeatDecl, ast.GraphDecl)


def graft(file: ast.File, claims: list[Claim], max_depth: int) -> ast.File:
    """The tree with each claimed statement in its place (see the module docstring)."""
    items = _graft_list(file.items, claims, 0, len(claims), ast.LetStmt, 1, max_depth)
    return file.model_copy(update={"items": items})


def _graft_list(items, claims, lo, hi, allowed, depth, max_depth) -> list:
    """`items` (a body at lark depth `depth`) with claims[lo:hi], which lie inside it."""
    out = []
    c = lo
    for item in items:
        first, last = item.span.line, item.span.end_line
        while c < hi and claims[c].line < first:
            _place(out, claims[c], allowed, depth, max_depth)
            c += 1
        inner = c
        while c < hi and claims[c].line <= last:
            c += 1
        if c > inner:
            item = _graft_node(item, claims, inner, c, depth + 1, max_depth)
        out.append(item)
    while c < hi:
        _place(out, claims[c], allowed, depth, max_depth)
        c += 1
    return out


def _place(out: list, claim: Claim, allowed, depth: int, max_depth: int) -> None:
    if not isinstance(claim.node, allowed) or depth + claim.depth > max_depth:
        raise Unclaimable
    out.append(claim.node)


def _graft_node(node, claims, lo, hi, depth, max_depth):
    """`node` (at lark depth `depth`) with claims[lo:hi], which lie within its lines."""
    if not all(node.span.line < claims[i].line < node.span.end_line for i in (lo, hi - 1)):
        raise Unclaimable
    if isinstance(node, _LET_BODIES):
        body = _graft_list(node.body, claims, lo, hi, ast.LetStmt, depth, max_depth)
        return node.model_copy(update={"body": body})
    if isinstance(node, ast.WiringStmt) and node.fixed is not None:
        fixed = _graft_list(node.fixed, claims, lo, hi, ast.FixedEdge, depth, max_depth)
        return node.model_copy(update={"fixed": fixed})
    raise Unclaimable
