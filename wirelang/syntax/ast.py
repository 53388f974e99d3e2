"""The syntax tree of a .wire file: frozen dataclasses, one per construct, each with a span.

This is the language as written (lets, templates, repeats and includes unexpanded, expressions
unevaluated). `wirelang fmt` prints it back; the passes in `wirelang.passes` turn it into the
resolved IR of `wirelang.ir`.

Plain dataclasses rather than pydantic models: the parser builds only well-formed nodes, so
validation bought nothing, and building ~45 pydantic schemas cost a fifth of a second at every
`wirelang check`. Construction is keyword-only, as it was; `model_copy(update=...)` remains.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from wirelang.diagnostics import Span

syntax_node = dataclass(frozen=True, kw_only=True)


class _Syntax:
    """The two pydantic methods the passes and tests use, for dataclass nodes."""

    def model_copy(self, update: dict | None = None):
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **(update or {}))

    def model_dump(self, exclude: set[str] | None = None) -> dict:
        """The node as nested dicts and lists (spans included), like pydantic's `model_dump`."""
        return {
            f.name: _dump(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if not exclude or f.name not in exclude
        }


def _dump(value: object) -> object:
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    dump = getattr(value, "model_dump", None)
    return dump() if dump is not None else value


@syntax_node
class Node(_Syntax):
    span: Span


# ------------------------------------------------------------------------- expressions
@syntax_node
class Num(Node):
    kind: Literal["num"] = "num"
    value: int | float
    text: str  # as written, so that `fmt` keeps `1e-4` as `1e-4`


@syntax_node
class Str(Node):
    kind: Literal["str"] = "str"
    value: str


@syntax_node
class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


@syntax_node
class Name(Node):
    kind: Literal["name"] = "name"
    name: str


@syntax_node
class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/", "^"]
    left: Expr
    right: Expr


@syntax_node
class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


@syntax_node
class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: list[Expr]


@syntax_node
class Call(Node):
    """`name(args)`: a function in an expression, a layer, a wiring, a semantics, a dataset."""

    kind: Literal["call"] = "call"
    name: str
    name_span: Span
    args: list[Arg] = field(default_factory=list)
    has_parens: bool = True


@syntax_node
class Percent(Node):
    """`x%`: a fraction of something (candidates for a budget)."""

    kind: Literal["percent"] = "percent"
    value: Expr


Expr = Num | Str | Bool | Name | BinOp | Neg | ListExpr | Call | Percent


@syntax_node
class Arg(Node):
    name: str | None = None  # None for a positional argument
    value: Expr


# ------------------------------------------------------------------------- graph statements
@syntax_node
class SetRef(Node):
    name: str
    member: int | None = None  # `h.2`: the second set of the group `h`

    @property
    def full(self) -> str:
        return self.name if self.member is None else f"{self.name}.{self.member}"


@syntax_node
class NodeSetDecl(Node):
    name: str
    size: Expr
    count: Expr | None = None  # `h[64] * 3`: a group of three sets h.1, h.2, h.3


@syntax_node
class NodesStmt(Node):
    kind: Literal["nodes"] = "nodes"
    sets: list[NodeSetDecl]
    role: Literal["input", "hidden", "output"] | None = None
    op: list[Call] | None = None
    send: list[Call] | None = None


@syntax_node
class EdgesPattern(Node):
    kind: Literal["edges_pattern"] = "edges_pattern"
    pattern: Call


@syntax_node
class EdgesArrow(Node):
    kind: Literal["edges_arrow"] = "edges_arrow"
    sources: list[SetRef]
    targets: list[SetRef]


@syntax_node
class BudgetAmount(Node):
    kind: Literal["amount"] = "amount"
    value: Expr
    percent: bool = False


@syntax_node
class BudgetPooled(Node):
    kind: Literal["pooled"] = "pooled"
    pool: str


BudgetValue = BudgetAmount | BudgetPooled


@syntax_node
class BudgetStmt(Node):
    kind: Literal["budget"] = "budget"
    value: BudgetValue


@syntax_node
class FixedEdge(Node):
    source: SetRef
    source_index: int
    target: SetRef
    target_indices: list[int]


@syntax_node
class WiringStmt(Node):
    kind: Literal["wiring"] = "wiring"
    method: Call
    fixed: list[FixedEdge] | None = None  # only for `wiring fixed { ... }`


@syntax_node
class SemanticsStmt(Node):
    kind: Literal["semantics"] = "semantics"
    semantics: Call


@syntax_node
class InitStmt(Node):
    """`init uniform(fan=800)`: how a graph's edge weights are drawn before training."""

    kind: Literal["init"] = "init"
    init: Call


@syntax_node
class LetStmt(Node):
    kind: Literal["let"] = "let"
    name: str
    value: Expr


GraphItem = (
    NodesStmt
    | EdgesPattern
    | EdgesArrow
    | BudgetStmt
    | WiringStmt
    | SemanticsStmt
    | InitStmt
    | LetStmt
)


# ------------------------------------------------------------------------- network items
@syntax_node
class LayerLine(Node):
    kind: Literal["line"] = "line"
    layers: list[Call]


@syntax_node
class LayerRepeat(Node):
    kind: Literal["layer_repeat"] = "layer_repeat"
    count: Expr
    var: str | None = None
    body: list[LayerItem]


LayerItem = LayerLine | LayerRepeat


@syntax_node
class LayersBlock(Node):
    kind: Literal["layers"] = "layers"
    role: Literal["stem", "head", "layers"]
    name: str | None = None
    body: list[LayerItem]


@syntax_node
class InputDecl(Node):
    kind: Literal["input"] = "input"
    name: str
    args: list[Arg]


@syntax_node
class ClassesStmt(Node):
    kind: Literal["classes"] = "classes"
    value: Expr


@syntax_node
class GraphDecl(Node):
    kind: Literal["graph"] = "graph"
    name: str | None = None
    body: list[GraphItem]


@syntax_node
class ResidualDecl(Node):
    kind: Literal["residual"] = "residual"
    name: str | None = None
    branch: list[LayerItem] | None = None
    branch_span: Span | None = None
    shortcut_span: Span | None = None
    shortcut: list[LayerItem] | None = None
    after: list[Call] = field(default_factory=list)
    # The order of the parts as written, so that fmt reprints them in place.
    order: list[Literal["branch", "shortcut", "after"]] = field(default_factory=list)


@syntax_node
class RepeatDecl(Node):
    kind: Literal["repeat"] = "repeat"
    count: Expr
    var: str | None = None
    body: list[NetItem]


@syntax_node
class UseDecl(Node):
    kind: Literal["use"] = "use"
    call: Call
    alias: str | None = None


@syntax_node
class PoolDecl(Node):
    kind: Literal["pool"] = "pool"
    name: str
    budget: BudgetValue
    allocate: str | None = None  # `allocate=NAME` as written; checked when the pool is built
    allocate_span: Span | None = None


@syntax_node
class SparseKinds(Node):
    kind: Literal["kinds"] = "kinds"
    kinds: list[str]


@syntax_node
class SparseExclude(Node):
    kind: Literal["exclude"] = "exclude"
    paths: list[str]
    path_spans: list[Span] | None = None  # one per path, for its errors


SparseItem = SparseKinds | SparseExclude | BudgetStmt | WiringStmt


@syntax_node
class SparseDecl(Node):
    kind: Literal["sparse"] = "sparse"
    body: list[SparseItem]


@syntax_node
class Setting(Node):
    kind: Literal["setting"] = "setting"
    key: str
    key_span: Span
    value: Expr


@syntax_node
class PhaseDecl(Node):
    kind: Literal["phase"] = "phase"
    settings: list[Setting]


@syntax_node
class TrainDecl(Node):
    kind: Literal["train"] = "train"
    body: list[Setting | PhaseDecl]


NetItem = (
    InputDecl
    | ClassesStmt
    | LayersBlock
    | GraphDecl
    | ResidualDecl
    | RepeatDecl
    | UseDecl
    | LetStmt
    | PoolDecl
    | SparseDecl
    | TrainDecl
)


# ------------------------------------------------------------------------- files
@syntax_node
class Param(Node):
    name: str
    default: Expr | None = None


@syntax_node
class IncludeDecl(Node):
    kind: Literal["include"] = "include"
    path: str


@syntax_node
class TemplateDecl(Node):
    kind: Literal["template"] = "template"
    name: str
    params: list[Param]
    body: list[NetItem]


@syntax_node
class NetworkDecl(Node):
    kind: Literal["network"] = "network"
    name: str
    body: list[NetItem]


FileItem = IncludeDecl | LetStmt | TemplateDecl | NetworkDecl


@syntax_node
class Comment(_Syntax):
    line: int
    col: int
    text: str


@syntax_node
class File(Node):
    path: str
    items: list[FileItem]
    comments: list[Comment] = field(default_factory=list)
