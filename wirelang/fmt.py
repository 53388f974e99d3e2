"""The canonical printer behind `wirelang fmt`: a syntax tree in, .wire text in house style out.

Printing happens in two steps. First the tree becomes a flat list of output lines, each tagged
with the source line whose trailing comment belongs at its end, interleaved with "slots": the
places where comments written on lines of their own can land (before every statement, before
every `}`, at the end of the file). Then the file's comments are dealt out: a comment on a line
that holds code trails the last output line made from that source line; any other comment goes
to the first slot that comes before a later source line. Every comment therefore lands exactly
once, in source order, and the output re-prints to itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wirelang.syntax import ast
from wirelang.syntax.parse import parse_text

_INDENT = "  "

# Binding strength of the grammar's expression rules, loosest first.
_SUM, _PRODUCT, _UNARY, _POWER, _ATOM = 1, 2, 3, 4, 5
# operator -> (its own level, least level of its left operand, least level of its right one).
# The grammar is left-associative for + - * / and right-associative for ^ (`atom "^" unary`).
_BINARY = {
    "+": (_SUM, _SUM, _PRODUCT),
    "-": (_SUM, _SUM, _PRODUCT),
    "*": (_PRODUCT, _PRODUCT, _UNARY),
    "/": (_PRODUCT, _PRODUCT, _UNARY),
    "^": (_POWER, _ATOM, _UNARY),
}

# Network items printed as blocks: they always get a blank line on either side.
_NET_BLOCKS = {"layers", "graph", "residual", "repeat", "sparse", "train"}
_FILE_BLOCKS = {"template", "network"}


def format_text(text: str, path: str = "<text>") -> str:
    return format_file(parse_text(text, path))


def format_file(file: ast.File) -> str:
    printer = _Printer(sorted(file.comments, key=lambda c: (c.line, c.col)))
    printer.items(0, file.items, _file_blank)
    last = file.items[-1].span.end_line if file.items else None
    printer.out.append(_Slot(0, float("inf"), False, "written", last, closing=True))
    return _assemble(printer.out, printer.comments)


# ------------------------------------------------------------------------- expressions
def _level(e: ast.Expr) -> int:
    if isinstance(e, ast.BinOp):
        return _BINARY[e.op][0]
    if isinstance(e, ast.Neg):
        return _UNARY
    if isinstance(e, ast.Percent):
        return 0  # only valid as a whole value; never nested in a parse
    return _ATOM


def expr(e: ast.Expr, least: int = 0) -> str:
    """`e` as text, in parentheses only when the context binds tighter than `e` does."""
    text = _expr_text(e)
    return f"({text})" if _level(e) < least else text


def _expr_text(e: ast.Expr) -> str:
    match e:
        case ast.Num():
            return e.text
        case ast.Str():
            return _quote(e.value)
        case ast.Bool():
            return "true" if e.value else "false"
        case ast.Name():
            return e.name
        case ast.BinOp():
            _, left, right = _BINARY[e.op]
            return f"{expr(e.left, left)} {e.op} {expr(e.right, right)}"
        case ast.Neg():
            return "-" + expr(e.operand, _UNARY)
        case ast.ListExpr():
            return "[" + ", ".join(expr(x) for x in e.items) + "]"
        case ast.Call():  # a function in an expression always has its parentheses
            return f"{e.name}({_args(e.args)})"
        case ast.Percent():
            return _percent(e.value)
    raise TypeError(f"not an expression: {e!r}")


def _percent(e: ast.Expr) -> str:
    # `d * 100%` parses the same, but `(d * 100)%` says what it means.
    return f"({expr(e)})%" if isinstance(e, ast.BinOp) else f"{expr(e)}%"


def _args(args: Sequence[ast.Arg]) -> str:
    return ", ".join(expr(a.value) if a.name is None else f"{a.name}={expr(a.value)}" for a in args)


def _call(c: ast.Call) -> str:
    """A call in statement position (a layer, a wiring, ...), where `relu` needs no parens."""
    # `has_parens` is False for `relu()` as parsed today, so the span also tells: it runs past
    # the name only when parentheses were written.
    parens = (
        c.args
        or c.has_parens
        or (c.span.end_line, c.span.end_col)
        != (
            c.name_span.end_line,
            c.name_span.end_col,
        )
    )
    return f"{c.name}({_args(c.args)})" if parens else c.name


def _calls(calls: Sequence[ast.Call]) -> str:
    return ", ".join(_call(c) for c in calls)


# The only escapes a .wire string has (see the parser); every other character prints as itself.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}


def _quote(value: str) -> str:
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in value) + '"'


def _budget(b: ast.BudgetAmount | ast.BudgetPooled) -> str:
    if isinstance(b, ast.BudgetPooled):
        return f"pooled {b.pool}"
    return _percent(b.value) if b.percent else expr(b.value)


def _set_ref(r: ast.SetRef) -> str:
    return r.full


def _node_set(s: ast.NodeSetDecl) -> str:
    text = f"{s.name}[{expr(s.size)}]"
    return text if s.count is None else f"{text} * {expr(s.count, _ATOM)}"


def _one_line(node: ast.Node) -> str | None:
    """The text of a statement that prints on one line, or None for a block."""
    match node:
        case ast.IncludeDecl():
            return f'include "{node.path}"'  # kept raw: the parser does not decode it
        case ast.LetStmt():
            return f"let {node.name} = {expr(node.value)}"
        case ast.InputDecl():
            return f"input {node.name}({_args(node.args)})"
        case ast.ClassesStmt():
            return f"classes {expr(node.value)}"
        case ast.PoolDecl():
            allocate = f" allocate={node.allocate}" if node.allocate is not None else ""
            return f"pool {node.name} {_budget(node.budget)}{allocate}"
        case ast.UseDecl():
            return f"use {_call(node.call)}" + (f" as {node.alias}" if node.alias else "")
        case ast.LayerLine():
            return _calls(node.layers)
        case ast.NodesStmt():
            parts = ["nodes " + ", ".join(_node_set(s) for s in node.sets)]
            parts += [node.role] if node.role else []
            parts += [f"op({_calls(node.op)})"] if node.op is not None else []
            parts += [f"send({_calls(node.send)})"] if node.send is not None else []
            return " ".join(parts)
        case ast.EdgesPattern():
            return f"edges {_call(node.pattern)}"
        case ast.EdgesArrow():
            sources, targets = (", ".join(map(_set_ref, s)) for s in (node.sources, node.targets))
            return f"edges {sources} -> {targets}"
        case ast.BudgetStmt():
            return f"budget {_budget(node.value)}"
        case ast.WiringStmt() if node.fixed is None:
            return f"wiring {_call(node.method)}"
        case ast.SemanticsStmt():
            return f"semantics {_call(node.semantics)}"
        case ast.InitStmt():
            return f"init {_call(node.init)}"
        case ast.SparseKinds():
            return "layers " + ", ".join(node.kinds)
        case ast.SparseExclude():
            return "exclude " + ", ".join(node.paths)
        case ast.Setting():
            return f"{node.key} {expr(node.value)}"
        case ast.FixedEdge():
            targets = ", ".join(map(str, node.target_indices))
            return f"{_set_ref(node.source)}[{node.source_index}] -> {_set_ref(node.target)}[{targets}]"
    return None


# ------------------------------------------------------------------------- layout
@dataclass
class _Line:
    depth: int
    text: str
    anchor: int | None  # the source line whose trailing comment goes at the end of this one


@dataclass
class _Slot:
    """Where comments standing on their own lines before source line `before` are printed."""

    depth: int
    before: float  # a source line (inf at the end of the file)
    exact: bool  # `before` is where the next thing really starts, not an estimate
    blank: str  # separation from the previous item: "yes", "no" or "written" (as in the source)
    prev_end: int | None  # last source line of the previous item, for "written"
    closing: bool = False  # a `}` or the end of the file follows: no blank line before it


def _file_blank(prev: ast.Node, item: ast.Node) -> str:
    return "yes" if {prev.kind, item.kind} & _FILE_BLOCKS else "written"


def _net_blank(prev: ast.Node, item: ast.Node) -> str:
    return "yes" if {prev.kind, item.kind} & _NET_BLOCKS else "written"


def _as_written(prev: ast.Node, item: ast.Node) -> str:
    return "written"


class _Printer:
    def __init__(self, comments: list[ast.Comment]):
        self.comments = comments
        self.out: list[_Line | _Slot] = []

    def line(self, depth: int, text: str, anchor: int | None) -> None:
        self.out.append(_Line(depth, text, anchor))

    def items(
        self, depth: int, items: Sequence[ast.Node], blank: Callable[[ast.Node, ast.Node], str]
    ) -> None:
        prev: ast.Node | None = None
        for item in items:
            sep = "no" if prev is None else blank(prev, item)
            end = None if prev is None else prev.span.end_line
            self.out.append(_Slot(depth, item.span.line, True, sep, end))
            self.node(depth, item)
            prev = item

    def close(self, depth: int, items: Sequence[ast.Node], end: float, exact: bool = True) -> None:
        last = items[-1].span.end_line if items else None
        self.out.append(_Slot(depth + 1, end, exact, "written", last, closing=True))
        self.line(depth, "}", int(end) if exact else None)

    def block(
        self, depth: int, head: str, node: ast.Node, items: Sequence[ast.Node], blank=_as_written
    ) -> None:
        self.line(depth, head + " {", node.span.line)
        self.items(depth + 1, items, blank)
        self.close(depth, items, node.span.end_line)

    def node(self, depth: int, node: ast.Node) -> None:
        text = _one_line(node)
        if text is not None:
            self.line(depth, text, node.span.end_line)
            return
        named = getattr(node, "name", None)
        suffix = f" {named}" if named else ""
        match node:
            case ast.NetworkDecl():
                self.block(depth, "network" + suffix, node, node.body, _net_blank)
            case ast.TemplateDecl():
                params = ", ".join(
                    p.name if p.default is None else f"{p.name}={expr(p.default)}"
                    for p in node.params
                )
                self.block(depth, f"template {node.name}({params})", node, node.body, _net_blank)
            case ast.LayersBlock():
                self.block(depth, node.role + suffix, node, node.body)
            case ast.GraphDecl():
                self.block(depth, "graph" + suffix, node, node.body)
            case ast.RepeatDecl() | ast.LayerRepeat():
                head = f"repeat {expr(node.count)}" + (f" as {node.var}" if node.var else "")
                self.block(
                    depth,
                    head,
                    node,
                    node.body,
                    _net_blank if node.kind == "repeat" else _as_written,
                )
            case ast.SparseDecl():
                self.block(depth, "sparse", node, node.body)
            case ast.TrainDecl():
                self.block(depth, "train", node, node.body)
            case ast.PhaseDecl():
                self.block(depth, "phase2", node, node.settings)
            case ast.WiringStmt():
                self.block(depth, "wiring fixed", node, node.fixed or [])
            case ast.ResidualDecl():
                self.residual(depth, node, suffix)
            case _:
                raise TypeError(f"cannot print {type(node).__name__}")

    # -- residual blocks: `shortcut { ... }` has no span of its own, so its lines are estimated
    def residual(self, depth: int, node: ast.ResidualDecl, suffix: str) -> None:
        self.line(depth, "residual" + suffix + " {", node.span.line)
        order = node.order or [p for p in ("branch", "shortcut", "after") if getattr(node, p)]
        parts = [p for p in order if getattr(node, p) is not None and (p != "after" or node.after)]
        cursor = node.span.line  # last source line known to be used so far
        for i, part in enumerate(parts):
            if part == "after":
                self.out.append(_Slot(depth + 1, node.after[0].span.line, True, "no", None))
                self.line(depth + 1, "after " + _calls(node.after), node.after[-1].span.end_line)
                cursor = node.after[-1].span.end_line
                continue
            body: list = getattr(node, part)
            span = node.branch_span if part == "branch" else None
            if span is not None:
                head, end, exact = span.line, span.end_line, True
            else:
                following = parts[i + 1] if i + 1 < len(parts) else None
                limit = self._start(node, following) if following else node.span.end_line
                head, end = self._estimate(cursor, body, limit)
                exact = False
            self.out.append(_Slot(depth + 1, head, exact, "no", None))
            self.line(depth + 1, part + " {", head if exact else None)
            self.items(depth + 2, body, _as_written)
            self.close(depth + 1, body, end, exact)
            # An estimated `}` line is exact on canonical output, which is what keeps the
            # "blank line as written" after it stable.
            cursor = int(end)
        self.out.append(
            _Slot(
                depth + 1,
                node.span.end_line,
                True,
                "written",
                cursor if parts else None,
                closing=True,
            )
        )
        self.line(depth, "}", node.span.end_line)

    @staticmethod
    def _start(node: ast.ResidualDecl, part: str) -> int:
        if part == "after":
            return node.after[0].span.line
        if part == "branch" and node.branch_span is not None:
            return node.branch_span.line
        return node.span.end_line

    def _estimate(self, after: int, body: list, limit: int) -> tuple[float, float]:
        """Guess the lines of a `{ ... }` with no span that lies between source lines `after`
        and `limit`, from the columns of the comments around its items: a comment indented at
        least as deep as the items is inside the block. Canonical output re-guesses the same."""
        if not body:
            return limit, limit
        first, last = body[0].span, body[-1].span
        lead = [c for c in self.comments if after < c.line < first.line]
        outside = [i for i, c in enumerate(lead) if c.col < first.col]
        head = lead[outside[-1]].line + 1 if outside else after + 1
        tail = [c for c in self.comments if last.end_line < c.line < limit]
        inside = 0
        while inside < len(tail) and tail[inside].col >= last.col:
            inside += 1
        end = tail[inside - 1].line + 1 if inside else last.end_line + 1
        return head, min(end, limit)


def _assemble(out: list[_Line | _Slot], comments: list[ast.Comment]) -> str:
    anchors = {e.anchor for e in out if isinstance(e, _Line) and e.anchor is not None}
    last_at = {
        e.anchor: i for i, e in enumerate(out) if isinstance(e, _Line) and e.anchor is not None
    }
    trailing = {c.line: c for c in comments if c.line in anchors}
    alone = [c for c in comments if c.line not in anchors]
    lines: list[str] = []

    def blank() -> None:
        if lines and lines[-1]:
            lines.append("")

    k = 0
    for i, e in enumerate(out):
        if isinstance(e, _Line):
            text = _INDENT * e.depth + e.text
            if e.anchor in trailing and last_at[e.anchor] == i:
                text += "  " + trailing[e.anchor].text
            lines.append(text)
            continue
        group = []
        while k < len(alone) and alone[k].line < e.before:
            group.append(alone[k])
            k += 1
        first = group[0].line if group else (e.before if e.exact and not e.closing else None)
        if e.blank == "yes" or (
            e.blank == "written"
            and e.prev_end is not None
            and first is not None
            and first - e.prev_end > 1
        ):
            blank()
        for j, c in enumerate(group):
            if j and c.line - group[j - 1].line > 1:
                blank()
            lines.append(_INDENT * e.depth + c.text)
        if group and e.exact and not e.closing and e.before - group[-1].line > 1:
            blank()
    return "\n".join(lines) + "\n" if lines else ""
