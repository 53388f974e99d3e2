"""Parse .wire text into the syntax tree of `wirelang.syntax.ast`, with spans and comments.

Syntax errors from lark become `SpecError`s that say what was found and what was expected in
the spec author's terms ("expected `}` or a name"), never lark's terminal names.
"""

from __future__ import annotations

import itertools
import re

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from wirelang.diagnostics import Diagnostic, Span, SpecError, remember_source
from wirelang.syntax import ast, fast, grammar
from wirelang.syntax.grammar import parser

# How a terminal is called in an error message, when it is not a literal word or symbol.
_FRIENDLY = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "an integer",
    "STRING": "a string",
    "PATH": "a layer path",
    "_NL": "end of line",
    "$END": "end of file",
    "PERCENT": "`%`",
}


# How much text one spec file may hold. Reading is linear, but lark's LALR parser costs 20-30 us
# of CPU per token and 600-900 bytes of memory per token of the tree (measured on 2.7 MB of
# commented `let`s: 32 s), and the fast path for bulk lines ~4 us and ~300 bytes: a hostile
# file of a few MB would take minutes and GBs. Each cap is checked before the work it bounds.
MAX_SPEC_BYTES = 64 * 2**20  # bytes of one file (a frozen export of a large graph is a few MB)
MAX_TOKENS = 2_000_000  # tokens of one file (a 4 MB frozen MobileNetV1 export holds 1.6 million)
MAX_PARSER_TOKENS = 100_000  # of them, tokens lark parses: lines other than whole-line bulk

# What counts as one token: a comment, a string, a name or number (with a fraction and an
# exponent), a run of line ends with the indentation after them, any other visible character.
# It is close to lark's lexer (`a.b` counts as one where lark sees three), and cheap: C code.
_TOKEN = re.compile(
    r'#[^\n]*|"(?:[^"\\\n]|\\.)*"|[A-Za-z0-9_]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?'
    r"|(?:\r?\n[\t \f]*)+|\S"
)


def parse_text(text: str, path: str) -> ast.File:
    remember_source(path, text)
    if len(text) > MAX_SPEC_BYTES:  # text given directly (the API); files are cut when read
        raise SpecError(
            [Diagnostic(_at(path, 1, 1), f"the spec is larger than {MAX_SPEC_BYTES:,} bytes")]
        )
    # The bulk lines (`let`s, fixed edges) are read by `fast`, the rest by lark. Should that
    # text not parse, or a claimed line stand where its statement may not, lark alone reads
    # the original, so that every error is reported exactly as it always was; unless the
    # original is too large for lark: then the error found in the rest (every line in its
    # place) is reported.
    try:
        blanked, claims, claimed = fast.scan(text, path, MAX_TOKENS)
    except fast.TooManyTokens as err:
        raise SpecError([_too_many(path, err.line, err.col, whole_file=True)]) from None
    if claims:
        try:
            file = _parse_file(blanked, path, more_errors=False, budget=MAX_TOKENS - claimed)
            return fast.graft(file, claims, MAX_TREE_DEPTH)
        except SpecError:
            if _beyond(text, MAX_PARSER_TOKENS) is not None:
                raise
        except fast.Unclaimable:
            pass
    return _parse_file(text, path)


def _beyond(text: str, limit: int) -> tuple[int, int] | None:
    """Line and column of the token after the first `limit` tokens of `text`, or None when
    `text` has no more than `limit`. Stops there: a huge text costs no more than the limit."""
    after = next(itertools.islice(_TOKEN.finditer(text), limit, None), None)
    if after is None:
        return None
    start = after.start()
    line = text.count("\n", 0, start) + 1
    return line, start - (text.rfind("\n", 0, start) + 1) + 1


def _too_many(path: str, line: int, col: int, whole_file: bool) -> Diagnostic:
    if whole_file:
        return Diagnostic(
            _at(path, line, col),
            f"more than {MAX_TOKENS:,} tokens in one spec file",
            "a spec is read in bounded time and memory, which this much text exceeds",
        )
    return Diagnostic(
        _at(path, line, col),
        f"more than {MAX_PARSER_TOKENS:,} tokens for the parser",
        "only whole-line `let`s and fixed edges without comments are read without the parser; "
        "the rest of a spec is limited to this many tokens",
    )


def _at(path: str, line: int, col: int) -> Span:
    return Span(path=path, line=line, col=col, end_line=line, end_col=col + 1)


def _parse_file(
    text: str, path: str, more_errors: bool = True, budget: int = MAX_TOKENS
) -> ast.File:
    """lark's tree of `text`, built; `budget`: the tokens the file has left (bulk lines used
    the rest). Refused before parsing when lark would get more than that or MAX_PARSER_TOKENS."""
    limit = min(MAX_PARSER_TOKENS, budget)
    over = _beyond(text, limit)
    if over is not None:
        raise SpecError([_too_many(path, *over, whole_file=limit < MAX_PARSER_TOKENS)])
    comments: list[ast.Comment] = []
    tree = _parse(text, path, comments, more_errors=more_errors)
    try:
        file = _Build(path).transform(tree)
    except VisitError as err:  # a builder check on a literal (integer too large, ...)
        if isinstance(err.orig_exc, SpecError):
            raise err.orig_exc from None
        raise
    return file.model_copy(update={"comments": comments})


def parse_bytes(data: bytes, path: str) -> ast.File:
    """Decode strictly: a binary or mis-encoded file is a spec error, not a crash."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        where = _byte_span(data, err.start, path)
        raise SpecError(
            [
                Diagnostic(
                    where,
                    f"the file is not valid UTF-8 (byte 0x{data[err.start]:02x})",
                    "save the spec as UTF-8",
                )
            ]
        ) from None
    if "\x00" in text:
        where = _byte_span(data, data.index(b"\x00"), path)
        raise SpecError(
            [
                Diagnostic(
                    where,
                    "the file contains a NUL byte; it looks binary",
                    "a .wire file is plain text",
                )
            ]
        )
    if text.startswith("\ufeff"):  # a byte-order mark is harmless: drop it
        text = text[1:]
    return parse_text(text, path)


def _byte_span(data: bytes, offset: int, path: str) -> Span:
    """Where a bad byte is, as a line and a column; its line is remembered for the excerpt with
    undecodable bytes and NULs shown as U+FFFD, so that the caret points at it."""
    start = data.rfind(b"\n", 0, offset) + 1
    end = data.find(b"\n", offset)
    line_bytes = data[start:] if end < 0 else data[start:end]
    before = data[start:offset].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    shown = line_bytes.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    line = data.count(b"\n", 0, offset) + 1
    remember_source(path, "\n" * (line - 1) + shown)
    col = len(before) + 1
    return Span(path=path, line=line, col=col, end_line=line, end_col=col + 1)


def parse_value(text: str, path: str = "<--set>") -> ast.Expr:
    """Parse a lone value, as given to `--set key=value` on the command line."""
    remember_source(path, text)
    over = _beyond(text, MAX_PARSER_TOKENS)
    if over is not None:
        raise SpecError([_too_many(path, *over, whole_file=False)])
    tree = _parse(
        f"network _ {{\ntrain {{\n_ {text}\n}}\n}}\n", path, [], line_offset=2, col_offset=2
    )
    file = _Build(path, line_offset=2, col_offset=2).transform(tree)
    setting = file.items[0].body[0].body[0]
    return setting.value


def _parse(
    text: str,
    path: str,
    comments: list[ast.Comment],
    line_offset: int = 0,
    col_offset: int = 0,
    more_errors: bool = True,
) -> Tree:
    lark: Lark = parser()
    if not text.endswith("\n"):
        text += "\n"
    grammar.comment_sink.clear()
    try:
        tree = lark.parse(text)
    except UnexpectedInput as err:
        found = [_syntax_error(err, text, path, lark, line_offset, col_offset)]
        if not line_offset and more_errors:  # a file, not a `--set` value: look further
            # each further error parses the text again: at most MAX_PARSER_TOKENS more
            tokens = sum(1 for _ in itertools.islice(_TOKEN.finditer(text), MAX_PARSER_TOKENS))
            found += _more_syntax_errors(
                text,
                err,
                path,
                lark,
                min(MAX_SYNTAX_ERRORS - 1, MAX_PARSER_TOKENS // max(tokens, 1)),
            )
        raise SpecError(found) from None
    comments.extend(
        ast.Comment(line=t.line, col=t.column, text=t.value.rstrip()) for t in grammar.comment_sink
    )
    grammar.comment_sink.clear()
    _check_depth(tree, path, line_offset, col_offset)
    return tree


# Every later stage (the tree builder, evaluation, formatting, the IR's validation) walks the
# tree recursively; a tree this deep would exhaust Python's stack there. No written spec comes
# near it: the structure of a network takes about a dozen levels, the rest is expressions.
MAX_TREE_DEPTH = 150


def _check_depth(tree: Tree, path: str, line_offset: int, col_offset: int) -> None:
    """Refuse a tree nested deeper than MAX_TREE_DEPTH (walked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_TREE_DEPTH:
            where = _span(path, node.meta, line_offset, col_offset)
            raise SpecError(
                [
                    Diagnostic(
                        where,
                        f"nested more than {MAX_TREE_DEPTH} levels deep",
                        "split the expression with `let`s",
                    )
                ]
            )
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))


MAX_SYNTAX_ERRORS = 20


def _more_syntax_errors(
    text: str, err: UnexpectedInput, path: str, lark: Lark, most: int
) -> list[Diagnostic]:
    """Syntax errors after the first, found by blanking each bad line and parsing again.

    LALR has no error recovery of its own. Blanking a line keeps every line number, and it is
    only done to a line whose brackets balance and that could not have opened a block, so the
    statements around it still parse as written; an error at or before the blanked line, on a
    line whose brackets do not balance, or where a `{` was expected (an unclosed or missing `{`
    would make every later line an error) ends the search. So each further error is a mistake
    of its own, never a cascade of the first. At most `most` more parses.
    """
    lines = text.split("\n")
    out: list[Diagnostic] = []
    while len(out) < most:
        row = err.line
        if not (
            isinstance(err, UnexpectedToken | UnexpectedCharacters)
            and 1 <= row <= len(lines)
            and _balanced(lines[row - 1])
        ):
            break
        if "LBRACE" in (getattr(err, "expected", None) or getattr(err, "allowed", None) or ()):
            break  # a block header without its `{` (`stem`, `graph g`): every later line would be nested wrong
        lines[row - 1] = ""
        again = "\n".join(lines)
        try:
            lark.parse(again)
            break
        except UnexpectedInput as nxt:
            if (
                nxt.line <= row
                or isinstance(nxt, UnexpectedEOF)
                or getattr(nxt, "token", None) is not None
                and nxt.token.type == "$END"
            ):
                break
            out.append(_syntax_error(nxt, again, path, lark, 0, 0))
            err = nxt
        finally:
            grammar.comment_sink.clear()
    return out


def _balanced(line: str) -> bool:
    """Whether a line's (), [] and {} balance (strings and a trailing comment ignored)."""
    depth = {"(": 0, "[": 0, "{": 0}
    closing = {")": "(", "]": "[", "}": "{"}
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "#":
            break
        if ch == '"':
            i += 1
            while i < len(line) and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
        elif ch in depth:
            depth[ch] += 1
        elif ch in closing:
            depth[closing[ch]] -= 1
            if depth[closing[ch]] < 0:
                return False
        i += 1
    return not any(depth.values())


def _syntax_error(
    err: UnexpectedInput, text: str, path: str, lark: Lark, line_offset: int, col_offset: int
) -> Diagnostic:
    line, col = (
        max(1, err.line - line_offset),
        max(1, err.column - (col_offset if err.line - line_offset >= 1 else 0)),
    )
    width = 1
    if isinstance(err, UnexpectedToken):
        if err.token.type == "$END" or (
            err.token.type == "_NL" and not text[err.token.start_pos :].strip()
        ):
            found = "end of file"  # the last newline (added above if missing) is the end
        elif err.token.type == "_NL":
            found = "end of line"
        else:
            found = f"`{err.token.value}`"
            width = max(1, len(str(err.token.value)))
        expected = err.expected
        message = f"unexpected {found}"
    elif isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        expected = err.allowed or set()
        message = (
            f"unexpected character `{ch}`"
            if ch.isprintable()
            else f"unexpected character U+{ord(ch):04X}"
        )
    elif isinstance(err, UnexpectedEOF):
        expected = err.expected
        message = "unexpected end of file"
    else:  # pragma: no cover - lark raises only the three above
        expected, message = set(), "syntax error"
    names = sorted({_describe(t, lark) for t in expected if not t.startswith("__")})
    hint = None
    if names:
        hint = "expected " + (
            ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        )
    span = Span(path=path, line=line, col=col, end_line=line, end_col=col + width)
    related: tuple = ()
    if message == "unexpected end of file" and "RBRACE" in expected and not line_offset:
        opened = _unclosed_brace(text)
        if opened is not None:
            hint = f"expected `}}`: the `{{` on line {opened[0]} is never closed"
            related = (
                (
                    Span(
                        path=path,
                        line=opened[0],
                        col=opened[1],
                        end_line=opened[0],
                        end_col=opened[1] + 1,
                    ),
                    "this `{` is not closed",
                ),
            )
    return Diagnostic(span, message, hint, related)


def _unclosed_brace(text: str) -> tuple[int, int] | None:
    """Line and column of the innermost `{` left open at the end (comments and strings skipped)."""
    stack: list[tuple[int, int]] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        i = 0
        while i < len(line):
            ch = line[i]
            if ch == "#":
                break
            if ch == '"':  # a string: skip to its closing quote
                i += 1
                while i < len(line) and line[i] != '"':
                    i += 2 if line[i] == "\\" else 1
            elif ch == "{":
                stack.append((lineno, i + 1))
            elif ch == "}" and stack:
                stack.pop()
            i += 1
    return stack[-1] if stack else None


def _describe(terminal: str, lark: Lark) -> str:
    if terminal in _FRIENDLY:
        return _FRIENDLY[terminal]
    try:
        pattern = lark.get_terminal(terminal).pattern
    except KeyError:
        return terminal.lower()
    if pattern.type == "str":
        return f"`{pattern.value}`"
    return terminal.lower()


_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}


def _unescape(raw: str, span: Span) -> str:
    """The escapes a .wire string allows: \\n, \\t, \\\\ and \\" (anything else is an error)."""
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt not in _ESCAPES:
                raise SpecError(
                    [
                        Diagnostic(
                            span,
                            f"unknown escape `\\{nxt}` in a string",
                            'strings allow \\n, \\t, \\\\ and \\"',
                        )
                    ]
                )
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _span(path: str, meta, line_offset: int = 0, col_offset: int = 0) -> Span:
    line, end_line = meta.line - line_offset, meta.end_line - line_offset
    col = meta.column - (col_offset if line == 1 and line_offset else 0)
    end_col = meta.end_column - (col_offset if end_line == 1 and line_offset else 0)
    return Span(path=path, line=line, col=col, end_line=end_line, end_col=end_col)


class _Build(Transformer):
    """Tree -> ast. Each method receives `meta` (positions) and the children."""

    def __init__(self, path: str, line_offset: int = 0, col_offset: int = 0):
        super().__init__()
        self.path = path
        self.off = (line_offset, col_offset)

    def _s(self, meta) -> Span:
        return _span(self.path, meta, *self.off)

    def _tok(self, tok: Token) -> Span:
        return _span(self.path, tok, *self.off)

    def _index(self, tok: Token) -> int:
        """A node index or group member: a located error when it has more digits than any
        network has nodes (Python refuses to convert thousands of digits at all)."""
        text = str(tok)
        if len(text.lstrip("0")) > 15:
            raise SpecError(
                [
                    Diagnostic(
                        self._tok(tok),
                        f"index with {len(text)} digits is too large",
                        "node indices are below the size of their set",
                    )
                ]
            )
        return int(text)

    # -- expressions
    @v_args(meta=True)
    def number(self, meta, c):
        text = str(c[0])
        # Python refuses to convert longer digit strings.
        if not ("." in text or "e" in text or "E" in text) and len(text) > 4000:
            raise SpecError(
                [
                    Diagnostic(
                        self._s(meta),
                        f"integer literal with {len(text)} digits is too large",
                        "values must be at most 10^15",
                    )
                ]
            )
        return ast.Num(span=self._s(meta), value=fast.number_value(text), text=text)

    @v_args(meta=True)
    def string(self, meta, c):
        raw = str(c[0])[1:-1]
        return ast.Str(
            span=self._s(meta), value=_unescape(raw, self._s(meta)) if "\\" in raw else raw
        )

    @v_args(meta=True)
    def true(self, meta, c):
        return ast.Bool(span=self._s(meta), value=True)

    @v_args(meta=True)
    def false(self, meta, c):
        return ast.Bool(span=self._s(meta), value=False)

    @v_args(meta=True)
    def name(self, meta, c):
        return ast.Name(span=self._s(meta), name=str(c[0]))

    def _bin(op):  # noqa: N805 - a helper that builds methods
        @v_args(meta=True)
        def method(self, meta, c):
            return ast.BinOp(span=self._s(meta), op=op, left=c[0], right=c[1])

        return method

    add, sub, mul, div, pow = _bin("+"), _bin("-"), _bin("*"), _bin("/"), _bin("^")

    @v_args(meta=True)
    def neg(self, meta, c):
        return ast.Neg(span=self._s(meta), operand=c[0])

    @v_args(meta=True)
    def list(self, meta, c):
        return ast.ListExpr(span=self._s(meta), items=[x for x in c if x is not None])

    @v_args(meta=True)
    def func(self, meta, c):
        return ast.Call(
            span=self._s(meta), name=str(c[0]), name_span=self._tok(c[0]), args=c[1] or []
        )

    @v_args(meta=True)
    def call(self, meta, c):
        # `relu()` and `relu` give the same children; the span tells them apart
        has_parens = (len(c) > 1 and c[1] is not None) or (meta.end_line, meta.end_column) != (
            c[0].end_line,
            c[0].end_column,
        )
        return ast.Call(
            span=self._s(meta),
            name=str(c[0]),
            name_span=self._tok(c[0]),
            args=c[1] or [],
            has_parens=has_parens,
        )

    def args(self, c):
        return list(c)

    @v_args(meta=True)
    def pos_arg(self, meta, c):
        return ast.Arg(span=self._s(meta), value=c[0])

    @v_args(meta=True)
    def kw_arg(self, meta, c):
        return ast.Arg(span=self._s(meta), name=str(c[0]), value=c[1])

    @v_args(meta=True)
    def value(self, meta, c):
        expr, percent = c
        return ast.Percent(span=self._s(meta), value=expr) if percent is not None else expr

    # -- graph statements
    @v_args(meta=True)
    def set_ref(self, meta, c):
        member = self._index(c[1]) if len(c) > 1 and c[1] is not None else None
        return ast.SetRef(span=self._s(meta), name=str(c[0]), member=member)

    def set_list(self, c):
        return list(c)

    @v_args(meta=True)
    def node_set(self, meta, c):
        return ast.NodeSetDecl(span=self._s(meta), name=str(c[0]), size=c[1], count=c[2])

    def role(self, c):
        return str(c[0])

    def op_clause(self, c):
        return [x for x in c if x is not None]

    send_clause = op_clause

    @v_args(meta=True)
    def nodes(self, meta, c):
        sets = [x for x in c if isinstance(x, ast.NodeSetDecl)]
        role, op, send = c[len(sets) :]
        return ast.NodesStmt(span=self._s(meta), sets=sets, role=role, op=op, send=send)

    @v_args(meta=True)
    def edges_pattern(self, meta, c):
        return ast.EdgesPattern(span=self._s(meta), pattern=c[0])

    @v_args(meta=True)
    def edges_arrow(self, meta, c):
        return ast.EdgesArrow(span=self._s(meta), sources=c[0], targets=c[1])

    @v_args(meta=True)
    def budget_amount(self, meta, c):
        return ast.BudgetAmount(span=self._s(meta), value=c[0], percent=c[1] is not None)

    @v_args(meta=True)
    def budget_pooled(self, meta, c):
        return ast.BudgetPooled(span=self._s(meta), pool=str(c[0]))

    @v_args(meta=True)
    def budget(self, meta, c):
        return ast.BudgetStmt(span=self._s(meta), value=c[0])

    @v_args(meta=True)
    def wiring(self, meta, c):
        return ast.WiringStmt(span=self._s(meta), method=c[0])

    @v_args(meta=True)
    def wiring_fixed(self, meta, c):
        # `fixed` is a keyword here, so synthesise the call node it stands for.
        span = self._s(meta)
        name_span = Span(
            path=span.path,
            line=span.line,
            col=span.col + 7,
            end_line=span.line,
            end_col=span.col + 12,
        )
        method = ast.Call(span=name_span, name="fixed", name_span=name_span, has_parens=False)
        return ast.WiringStmt(span=span, method=method, fixed=[x for x in c if x is not None])

    @v_args(meta=True)
    def fixed_edge(self, meta, c):
        return ast.FixedEdge(
            span=self._s(meta),
            source=c[0],
            source_index=self._index(c[1]),
            target=c[2],
            target_indices=[self._index(x) for x in c[3:]],
        )

    @v_args(meta=True)
    def semantics(self, meta, c):
        return ast.SemanticsStmt(span=self._s(meta), semantics=c[0])

    @v_args(meta=True)
    def edge_init(self, meta, c):
        return ast.InitStmt(span=self._s(meta), init=c[0])

    @v_args(meta=True)
    def let(self, meta, c):
        return ast.LetStmt(span=self._s(meta), name=str(c[0]), value=c[1])

    @v_args(meta=True)
    def graph(self, meta, c):
        return ast.GraphDecl(
            span=self._s(meta), name=None if c[0] is None else str(c[0]), body=list(c[1:])
        )

    # -- layers
    @v_args(meta=True)
    def layer_line(self, meta, c):
        return ast.LayerLine(span=self._s(meta), layers=list(c))

    @v_args(meta=True)
    def layer_repeat(self, meta, c):
        return ast.LayerRepeat(
            span=self._s(meta),
            count=c[0],
            var=None if c[1] is None else str(c[1]),
            body=list(c[2:]),
        )

    def layers_kind(self, c):
        return str(c[0])

    @v_args(meta=True)
    def layers(self, meta, c):
        return ast.LayersBlock(
            span=self._s(meta),
            role=c[0],
            name=None if c[1] is None else str(c[1]),
            body=list(c[2:]),
        )

    @v_args(meta=True)
    def branch(self, meta, c):
        return ("branch", list(c), self._s(meta))

    @v_args(meta=True)
    def shortcut(self, meta, c):
        return ("shortcut", list(c), self._s(meta))

    @v_args(meta=True)
    def after(self, meta, c):
        return ("after", list(c), self._s(meta))

    @v_args(meta=True)
    def residual(self, meta, c):
        fields: dict = {"order": []}
        for part, body, span in c[1:]:
            if part in fields:
                raise SpecError([Diagnostic(span, f"a residual block has one `{part}`")])
            fields[part] = body
            fields["order"].append(part)
            if part in ("branch", "shortcut"):
                fields[f"{part}_span"] = span
        return ast.ResidualDecl(
            span=self._s(meta), name=None if c[0] is None else str(c[0]), **fields
        )

    # -- network structure
    @v_args(meta=True)
    def input_decl(self, meta, c):
        return ast.InputDecl(span=self._s(meta), name=str(c[0]), args=c[1])

    @v_args(meta=True)
    def classes(self, meta, c):
        return ast.ClassesStmt(span=self._s(meta), value=c[0])

    @v_args(meta=True)
    def repeat(self, meta, c):
        return ast.RepeatDecl(
            span=self._s(meta),
            count=c[0],
            var=None if c[1] is None else str(c[1]),
            body=list(c[2:]),
        )

    @v_args(meta=True)
    def use(self, meta, c):
        return ast.UseDecl(span=self._s(meta), call=c[0], alias=None if c[1] is None else str(c[1]))

    @v_args(meta=True)
    def pool(self, meta, c):
        allocate = c[2]  # the NAME token of `allocate=NAME`, or None
        return ast.PoolDecl(
            span=self._s(meta),
            name=str(c[0]),
            budget=c[1],
            allocate=None if allocate is None else str(allocate),
            allocate_span=None if allocate is None else self._tok(allocate),
        )

    def pool_allocate(self, c):
        return c[0]

    @v_args(meta=True)
    def sparse_kinds(self, meta, c):
        return ast.SparseKinds(span=self._s(meta), kinds=[str(x) for x in c])

    @v_args(meta=True)
    def sparse_exclude(self, meta, c):
        return ast.SparseExclude(
            span=self._s(meta), paths=[str(x) for x in c], path_spans=[self._tok(x) for x in c]
        )

    @v_args(meta=True)
    def sparse(self, meta, c):
        return ast.SparseDecl(span=self._s(meta), body=list(c))

    @v_args(meta=True)
    def setting(self, meta, c):
        return ast.Setting(span=self._s(meta), key=str(c[0]), key_span=self._tok(c[0]), value=c[1])

    @v_args(meta=True)
    def phase(self, meta, c):
        return ast.PhaseDecl(span=self._s(meta), settings=list(c))

    @v_args(meta=True)
    def train(self, meta, c):
        return ast.TrainDecl(span=self._s(meta), body=list(c))

    # -- files
    @v_args(meta=True)
    def include(self, meta, c):
        return ast.IncludeDecl(span=self._s(meta), path=str(c[0])[1:-1])

    @v_args(meta=True)
    def param(self, meta, c):
        return ast.Param(span=self._s(meta), name=str(c[0]), default=c[1])

    @v_args(meta=True)
    def template(self, meta, c):
        params = [x for x in c[1:] if isinstance(x, ast.Param)]
        body = [x for x in c[1:] if x is not None and not isinstance(x, ast.Param)]
        return ast.TemplateDecl(span=self._s(meta), name=str(c[0]), params=params, body=body)

    @v_args(meta=True)
    def network(self, meta, c):
        return ast.NetworkDecl(span=self._s(meta), name=str(c[0]), body=list(c[1:]))

    @v_args(meta=True)
    def start(self, meta, c):
        span = (
            self._s(meta)
            if not meta.empty
            else Span(path=self.path, line=1, col=1, end_line=1, end_col=1)
        )
        return ast.File(span=span, path=self.path, items=list(c))
