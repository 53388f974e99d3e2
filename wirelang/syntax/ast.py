"""The syntax tree of a .wire file: frozen pydantic models, one per construct, each with a span.

This is the language as written (lets, templates, repeats and includes unexpanded, expressions
unevaluated). `wirelang fmt` prints it back; the passes in `wirelang.passes` turn it into the
resolved IR of `wirelang.ir`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from wirelang.diagnostics import Span


class Node(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    span: Span


# ------------------------------------------------------------------------- expressions
class Num(Node):
    kind: Literal["num"] = "num"
    value: int | float
    text: str  # as written, so that `fmt` keeps `1e-4` as `1e-4`


class Str(Node):
    kind: Literal["str"] = "str"
    value: str


class Bool(Node):
    kind: Literal["bool"] = "bool"
    value: bool


class Name(Node):
    kind: Literal["name"] = "name"
    name: str


class BinOp(Node):
    kind: Literal["binop"] = "binop"
    op: Literal["+", "-", "*", "/", "^"]
    left: Expr
    right: Expr


class Neg(Node):
    kind: Literal["neg"] = "neg"
    operand: Expr


class ListExpr(Node):
    kind: Literal["list"] = "list"
    items: list[Expr]


class Call(Node):
    """`name(args)`: a function in an expression, a layer, a wiring, a semantics, a dataset."""

    kind: Literal["call"] = "call"
    name: str
    name_span: Span
    args: list[Arg] = []
    has_parens: bool = True


class Percent(Node):
    """`x%`: a fraction of something (candidates for a budget)."""

    kind: Literal["percent"] = "percent"
    value: Expr


Expr = Annotated[Num | Str | Bool | Name | BinOp | Neg | ListExpr | Call | Percent, Field(discriminator="kind")]


class Arg(Node):
    name: str | None = None  # None for a positional argument
    value: Expr


# ------------------------------------------------------------------------- graph statements
class SetRef(Node):
    name: str
    member: int | None = None  # `h.2`: the second set of the group `h`

    @property
    def full(self) -> str:
        return self.name if self.member is None else f"{self.name}.{self.member}"


class NodeSetDecl(Node):
    name: str
    size: Expr
    count: Expr | None = None  # `h[64] * 3`: a group of three sets h.1, h.2, h.3


class NodesStmt(Node):
    kind: Literal["nodes"] = "nodes"
    sets: list[NodeSetDecl]
    role: Literal["input", "hidden", "output"] | None = None
    op: list[Call] | None = None
    send: list[Call] | None = None


class EdgesPattern(Node):
    kind: Literal["edges_pattern"] = "edges_pattern"
    pattern: Call


class EdgesArrow(Node):
    kind: Literal["edges_arrow"] = "edges_arrow"
    sources: list[SetRef]
    targets: list[SetRef]


class BudgetAmount(Node):
    kind: Literal["amount"] = "amount"
    value: Expr
    percent: bool = False


class BudgetPooled(Node):
    kind: Literal["pooled"] = "pooled"
    pool: str


BudgetValue = Annotated[BudgetAmount | BudgetPooled, Field(discriminator="kind")]


class BudgetStmt(Node):
    kind: Literal["budget"] = "budget"
    value: BudgetValue


class FixedEdge(Node):
    source: SetRef
    source_index: int
    target: SetRef
    target_indices: list[int]


class WiringStmt(Node):
    kind: Literal["wiring"] = "wiring"
    method: Call
    fixed: list[FixedEdge] | None = None  # only for `wiring fixed { ... }`


class SemanticsStmt(Node):
    kind: Literal["semantics"] = "semantics"
    semantics: Call


class LetStmt(Node):
    kind: Literal["let"] = "let"
    name: str
    value: Expr


GraphItem = Annotated[
    NodesStmt | EdgesPattern | EdgesArrow | BudgetStmt | WiringStmt | SemanticsStmt | LetStmt,
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------------- network items
class LayerLine(Node):
    kind: Literal["line"] = "line"
    layers: list[Call]


class LayerRepeat(Node):
    kind: Literal["layer_repeat"] = "layer_repeat"
    count: Expr
    var: str | None = None
    body: list[LayerItem]


LayerItem = Annotated[LayerLine | LayerRepeat, Field(discriminator="kind")]


class LayersBlock(Node):
    kind: Literal["layers"] = "layers"
    role: Literal["stem", "head", "layers"]
    name: str | None = None
    body: list[LayerItem]


class InputDecl(Node):
    kind: Literal["input"] = "input"
    name: str
    args: list[Arg]


class ClassesStmt(Node):
    kind: Literal["classes"] = "classes"
    value: Expr


class GraphDecl(Node):
    kind: Literal["graph"] = "graph"
    name: str | None = None
    body: list[GraphItem]


class ResidualDecl(Node):
    kind: Literal["residual"] = "residual"
    name: str | None = None
    branch: list[LayerItem] | None = None
    branch_span: Span | None = None
    shortcut_span: Span | None = None
    shortcut: list[LayerItem] | None = None
    after: list[Call] = []
    # The order of the parts as written, so that fmt reprints them in place.
    order: list[Literal["branch", "shortcut", "after"]] = []


class RepeatDecl(Node):
    kind: Literal["repeat"] = "repeat"
    count: Expr
    var: str | None = None
    body: list[NetItem]


class UseDecl(Node):
    kind: Literal["use"] = "use"
    call: Call
    alias: str | None = None


class PoolDecl(Node):
    kind: Literal["pool"] = "pool"
    name: str
    budget: BudgetValue


class SparseKinds(Node):
    kind: Literal["kinds"] = "kinds"
    kinds: list[str]


class SparseExclude(Node):
    kind: Literal["exclude"] = "exclude"
    paths: list[str]


SparseItem = Annotated[
    SparseKinds | SparseExclude | BudgetStmt | WiringStmt, Field(discriminator="kind")
]


class SparseDecl(Node):
    kind: Literal["sparse"] = "sparse"
    body: list[SparseItem]


class Setting(Node):
    kind: Literal["setting"] = "setting"
    key: str
    key_span: Span
    value: Expr


class PhaseDecl(Node):
    kind: Literal["phase"] = "phase"
    settings: list[Setting]


class TrainDecl(Node):
    kind: Literal["train"] = "train"
    body: list[Annotated[Setting | PhaseDecl, Field(discriminator="kind")]]


NetItem = Annotated[
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
    | TrainDecl,
    Field(discriminator="kind"),
]


# ------------------------------------------------------------------------- files
class Param(Node):
    name: str
    default: Expr | None = None


class IncludeDecl(Node):
    kind: Literal["include"] = "include"
    path: str


class TemplateDecl(Node):
    kind: Literal["template"] = "template"
    name: str
    params: list[Param]
    body: list[NetItem]


class NetworkDecl(Node):
    kind: Literal["network"] = "network"
    name: str
    body: list[NetItem]


FileItem = Annotated[
    IncludeDecl | LetStmt | TemplateDecl | NetworkDecl, Field(discriminator="kind")
]


class Comment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    line: int
    col: int
    text: str


class File(Node):
    path: str
    items: list[FileItem]
    comments: list[Comment] = []


for _model in list(globals().values()):
    if isinstance(_model, type) and issubclass(_model, BaseModel) and _model is not BaseModel:
        _model.model_rebuild()
