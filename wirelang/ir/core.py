"""The resolved network: frozen pydantic models with every expression evaluated.

Templates, repeats, lets and includes are gone; every object still carries the span of the
text that produced it, so that later checks and the backend can point back at the spec.
Node sets are the unit of the IR (never single nodes): a graph is its sets, the candidate edge
blocks between them, a budget, a wiring method and a semantics.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from wirelang.diagnostics import Span

Scalar = int | float | bool | str | None | list[int] | list[float]


class IRNode(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    span: Span


class Shape(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    channels: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.channels}x{self.height}x{self.width}"


class CountBudget(IRNode):
    """Exactly `count` edges (or weights)."""

    kind: Literal["count"] = "count"
    count: int
    k: int | None = None  # resolved by the check pass (the count, once checked against candidates)


class FractionBudget(IRNode):
    """A fraction of the candidates, rounded down to a whole k by the check pass."""

    kind: Literal["fraction"] = "fraction"
    fraction: float
    k: int | None = None  # resolved by the check pass


class PooledBudget(IRNode):
    """A share of the pool `pool`: its k belongs to the pool (`Pool.budget.k`), not the member."""

    kind: Literal["pooled"] = "pooled"
    pool: str


# A pool's own budget is a count or a fraction of its members' candidates, never another pool.
OwnBudget = Annotated[CountBudget | FractionBudget, Field(discriminator="kind")]
Budget = Annotated[CountBudget | FractionBudget | PooledBudget, Field(discriminator="kind")]
BUDGET_TYPES = (CountBudget, FractionBudget, PooledBudget)


class _WiringMethod(IRNode):
    """A wiring method with its parameters bound and typed. One model per method of
    `wirelang.methods.WIRINGS`, whose `ParamSpec`s own the names, types, defaults and limits: the
    fields here are those parameters in the registry's order, without defaults (the builder binds
    a spec's call against the registry, `methods.new_wiring` fills defaults for code that names a
    method alone), and a test checks the two agree. Strict, so a value of the wrong type is
    refused rather than converted."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def parameters(self) -> dict[str, Scalar]:
        """The parameters by name, as `wiring METHOD(...)` writes them (export)."""
        return {n: getattr(self, n) for n in type(self).model_fields if n not in _WIRING_OWN}


# Fields of a wiring model that are not parameters of its method.
_WIRING_OWN = ("span", "method", "fixed", "fixed_spans")


class DnwWiring(_WiringMethod):
    method: Literal["dnw"] = "dnw"
    rank: str


class DnwNoUpdateWiring(_WiringMethod):
    method: Literal["dnw_no_update"] = "dnw_no_update"


class RandomWiring(_WiringMethod):
    method: Literal["random"] = "random"
    seed: int | None  # None: the model's seed


class CompleteWiring(_WiringMethod):
    method: Literal["complete"] = "complete"


class TargetedDropoutWiring(_WiringMethod):
    method: Literal["targeted_dropout"] = "targeted_dropout"
    rho: float
    scope: str


class L1AnnealWiring(_WiringMethod):
    method: Literal["l1_anneal"] = "l1_anneal"
    strength: float
    end: float


class FixedWiring(_WiringMethod):
    """`wiring fixed { ... }`: explicit (source set, source index, target set, target index)
    edges; a method whose `edges_listed` is set has these two fields."""

    method: Literal["fixed"] = "fixed"
    fixed: list[tuple[str, int, str, int]]
    # Where each fixed edge was written, for its errors; not part of the network's meaning.
    fixed_spans: list[Span] | None = Field(default=None, exclude=True, repr=False)


class LotteryOneShotWiring(_WiringMethod):
    method: Literal["lottery_one_shot"] = "lottery_one_shot"


class FineTuneWiring(_WiringMethod):
    method: Literal["fine_tune"] = "fine_tune"


Wiring = Annotated[
    DnwWiring
    | DnwNoUpdateWiring
    | RandomWiring
    | CompleteWiring
    | TargetedDropoutWiring
    | L1AnnealWiring
    | FixedWiring
    | LotteryOneShotWiring
    | FineTuneWiring,
    Field(discriminator="method"),
]
WIRING_TYPES: dict[str, type[_WiringMethod]] = {
    t.model_fields["method"].default: t
    for t in (
        DnwWiring,
        DnwNoUpdateWiring,
        RandomWiring,
        CompleteWiring,
        TargetedDropoutWiring,
        L1AnnealWiring,
        FixedWiring,
        LotteryOneShotWiring,
        FineTuneWiring,
    )
}


class _SemanticsKind(IRNode):
    def parameters(self) -> dict[str, Scalar]:
        """The parameters by name, as `semantics KIND(...)` writes them (export, reports)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name not in _OWN}


_OWN = ("span", "kind")


class StaticSemantics(_SemanticsKind):
    """A DAG evaluated once, sets in topological order."""

    kind: Literal["static"] = "static"

    @property
    def steps(self) -> int:
        """Synchronous evaluations of the whole graph per forward pass."""
        return 1


class DiscreteSemantics(_SemanticsKind):
    """`steps` synchronous steps of the whole graph per forward pass."""

    kind: Literal["discrete"] = "discrete"
    steps: int


class ContinuousSemantics(_SemanticsKind):
    """dZ/dt = f(sum w Z) on [0, time], integrated by torchdiffeq's `solver`. `step_size` is
    None for adaptive solvers (their evaluation count is measured, see `nfe`)."""

    kind: Literal["continuous"] = "continuous"
    time: float
    solver: str
    rtol: float
    atol: float
    adjoint: bool
    step_size: float | None


# The fields of each kind are the parameters `wirelang.methods.SEMANTICS` declares for it, in its
# order and without defaults: that registry owns names, defaults and ranges, the builder binds a
# spec's call against it and constructs the model (a test checks the two agree).
Semantics = Annotated[
    StaticSemantics | DiscreteSemantics | ContinuousSemantics, Field(discriminator="kind")
]
SEMANTICS_TYPES: dict[str, type[_SemanticsKind]] = {
    "static": StaticSemantics,
    "discrete": DiscreteSemantics,
    "continuous": ContinuousSemantics,
}


class _InitKind(IRNode):
    """How a graph's edge weights are drawn, parameters resolved: one model per kind of
    `wirelang.methods.INITS` (which owns names, types and defaults; a test checks these fields
    against it). Every parameter is resolved by the builder, so none is optional here (`uniform`'s
    `fan` defaults to the graph's sending nodes). Strict, like the wirings."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    def parameters(self) -> dict[str, Scalar]:
        """The parameters by name, as `init KIND(...)` writes them (export)."""
        return {name: getattr(self, name) for name in type(self).model_fields if name not in _OWN}


class UniformInit(_InitKind):
    kind: Literal["uniform"] = "uniform"
    fan: int


class NormalInit(_InitKind):
    kind: Literal["normal"] = "normal"
    std: float


class KaimingInit(_InitKind):
    kind: Literal["kaiming"] = "kaiming"


Init = Annotated[UniformInit | NormalInit | KaimingInit, Field(discriminator="kind")]
INIT_TYPES: dict[str, type[_InitKind]] = {
    "uniform": UniformInit,
    "normal": NormalInit,
    "kaiming": KaimingInit,
}


class SparseSpec(IRNode):
    """A conv or linear weight trained as a learned wiring over its own entries."""

    budget: Budget
    wiring: Wiring


class Layer(IRNode):
    kind: Literal["layer"] = "layer"
    op: str
    params: dict[str, Scalar]
    path: str
    sparse: SparseSpec | None = None
    in_shape: Shape | None = None
    out_shape: Shape | None = None


class NodeSet(IRNode):
    name: str
    size: Annotated[int, Field(ge=1)]
    role: Literal["input", "hidden", "output"]
    op: list[Layer] = []  # applied to the summed input of each node (the paper's f_u)
    send: list[Layer] = []  # applied to a node's state before it leaves along edges
    in_hw: tuple[int, int] | None = None
    out_hw: tuple[int, int] | None = None


class EdgeBlock(IRNode):
    """All nodes of `source` may feed all nodes of `target` (minus the diagonal when a set
    feeds itself without self loops)."""

    source: str
    target: str
    self_loops: bool = False
    candidates: int = 0


class Graph(IRNode):
    kind: Literal["graph"] = "graph"
    name: str
    sets: list[NodeSet]
    blocks: list[EdgeBlock]
    budget: Budget
    wiring: Wiring
    semantics: Semantics
    init: Init
    in_shape: Shape | None = None
    out_shape: Shape | None = None

    @property
    def candidates(self) -> int:
        return sum(b.candidates for b in self.blocks)

    def set(self, name: str) -> NodeSet:
        return next(s for s in self.sets if s.name == name)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.sets)


class Residual(IRNode):
    kind: Literal["residual"] = "residual"
    name: str
    branch: list[Layer]
    shortcut: list[Layer] = []  # empty: identity
    after: list[Layer] = []
    in_shape: Shape | None = None
    out_shape: Shape | None = None


Item = Annotated[Layer | Graph | Residual, Field(discriminator="kind")]


# How a pool's k is split between its members: `global` ranks all members' weights together (one
# top k over the pool); `uniform` gives each member the pool's fraction of its own candidates;
# `erk` gives each the Erdos-Renyi-Kernel density of RigL. The counts: `wirelang.cost.member_ks`.
Allocation = Literal["global", "uniform", "erk"]
ALLOCATIONS: tuple[str, ...] = Allocation.__args__


class Pool(IRNode):
    name: str
    budget: OwnBudget
    members: list[str] = []  # graph names and layer paths sharing this pool
    candidates: int = 0
    # Both are left out of the dump when they hold their defaults, so that a pooled network
    # written before allocations existed keeps its meaning and `spec_hash` (runs, checkpoints).
    allocate: Allocation = Field(default="global", exclude_if=lambda v: v == "global")
    # Each member's own k (graph name or layer path -> k) when the allocation is per member,
    # set by the check pass from `cost.member_ks`; empty for a pool ranked jointly.
    shares: dict[str, int] = Field(default={}, exclude_if=lambda v: not v)


class Network(IRNode):
    name: str
    input_kind: str = "image"
    input: Shape
    classes: int
    items: list[Item]
    pools: list[Pool] = []
    train: dict[str, Any] = {}  # validated by wirelang.train_config.TrainConfig
    train_spans: dict[str, Span] = {}
    language_version: int = 1

    def graphs(self) -> list[Graph]:
        return [i for i in self.items if isinstance(i, Graph)]

    def layers(self) -> list[Layer]:
        """Every plain layer in order, including those inside residual blocks."""
        out: list[Layer] = []
        for item in self.items:
            if isinstance(item, Layer):
                out.append(item)
            elif isinstance(item, Residual):
                out.extend(item.branch + item.shortcut + item.after)
        return out
