"""Wiring methods and semantics: their names, parameters and properties, torch-free.

Every property of a wiring method that some module acts on is a field of its `WiringSpec` in
`WIRINGS`; the builder, the checks, the counts, the masks (`wirelang.backend.masks`) and the
trainer ask those fields, never the method's name.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Literal

from wirelang.diagnostics import UNKNOWN, Span
from wirelang.ir import core
from wirelang.ops import ParamSpec


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: tuple[ParamSpec, ...]
    doc: str
    positional: tuple[str, ...] = ()

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)


@dataclass(frozen=True)
class WiringSpec(MethodSpec):
    """A wiring method and every property of it that the rest of the tree acts on: the builder,
    the checks, the counts, the masks and the trainer ask these fields, never the method's name
    (tests/test_methods_registry.py holds the table and enforces that)."""

    # Under a pooled budget, ranks all members' weights together (one top k over the pool);
    # otherwise each member keeps its own share of the pool's k (`wirelang.cost.budget_k`). A pool
    # that allocates per member (`allocate=erk|uniform`) gives every member its own k whatever
    # the method (`wirelang.cost.ranks_jointly`).
    pools: bool = False
    # Keeps every candidate edge, whatever the budget: its k is the number of candidates, no
    # budget need be written and nothing is ranked.
    dense: bool = False
    # The backward pass gives every candidate the gradient it would have if it were present (the
    # DNW rule), not only the active ones; not in a second phase, whose mask is fixed.
    straight_through: bool = False
    # The mask is chosen once, when the model is built, and never follows the weights: a
    # checkpoint carries it, and evaluation and training use the same one.
    mask_fixed_at_start: bool = False
    # That fixed mask is the list of edges written in the spec (`wiring fixed { ... }`), not one
    # drawn from the seed; the k is the list's length and no budget need be written.
    edges_listed: bool = False
    # While training (for a two-phase method: through its first phase) every candidate is
    # active; without a second phase, at evaluation too.
    trains_complete: bool = False
    # The mask keeps the largest weights, their number falling linearly from every candidate to
    # k as training progresses (the `end` parameter: the fraction of training it takes).
    anneals: bool = False
    # A penalty on the wiring's weights added to the training loss: "l1" (the `strength`
    # parameter times the sum of |w|).
    regularizer: Literal["l1"] | None = None
    # While training, edges outside the top k are switched on at random each step, so the mask
    # differs from step to step; evaluation uses the top k alone.
    stochastic_mask: bool = False
    # A second training phase with the top-k mask of the first phase's final weights fixed:
    # "rewind" restarts it from the initial weights (the lottery ticket), "continue" goes on from
    # the trained ones (with a smaller default learning rate, `train.optim.FINE_TUNE_LR`).
    second_phase: Literal["rewind", "continue"] | None = None

    def __post_init__(self) -> None:
        if self.edges_listed and not self.mask_fixed_at_start:
            raise ValueError(f"{self.name}: a listed mask is fixed at the start")
        if self.dense and (not self.trains_complete or self.second_phase is not None):
            raise ValueError(f"{self.name}: a dense wiring trains complete in one phase")
        if self.second_phase is not None and not self.trains_complete:
            raise ValueError(f"{self.name}: a second phase follows a complete first phase")
        # The parameters these properties are read through (`wirelang.backend.masks`).
        needs = {
            "stochastic_mask": ("rho", "scope"),
            "anneals": ("end",),
            "regularizer": ("strength",),
        }
        if self.mask_fixed_at_start and not self.edges_listed:
            needs["mask_fixed_at_start"] = ("seed",)  # the mask is drawn from it
        for prop, names in needs.items():
            missing = [n for n in names if getattr(self, prop) and self.param(n) is None]
            if missing:
                raise ValueError(f"{self.name}: `{prop}` reads the parameter `{missing[0]}`")

    @property
    def two_phase(self) -> bool:
        """Trains the complete graph first, then a fixed top-k mask."""
        return self.second_phase is not None


# What DNW's top k ranks. `candidates`: the graph's candidate edges only. `square`: every entry of
# the graph's nodes x nodes matrix, as the authors' code ranks its whole 800 x 800 weight; the
# entries that are not candidates hold fixed magnitudes drawn from the graph's `init` and never
# carry an edge, so part of k sits on them while the candidates' weights are small: the graph
# starts sparser than k and fills up as the weights of useful edges grow.
RANKS = ("candidates", "square")

WIRINGS: dict[str, WiringSpec] = {
    m.name: m
    for m in [
        WiringSpec(
            "dnw",
            (ParamSpec("rank", "str", "candidates", choices=RANKS, implicit=True),),
            "top-k edges by |w| forward, straight-through gradient to every candidate",
            pools=True,
            straight_through=True,
        ),
        WiringSpec(
            "dnw_no_update",
            (),
            "top-k edges by |w| forward, no gradient to edges outside the top k",
            pools=True,
        ),
        WiringSpec(
            "random",
            (ParamSpec("seed", "int?", None, minimum=0),),
            "a fixed random set of k candidates, chosen once from the seed",
            positional=("seed",),
            mask_fixed_at_start=True,
        ),
        WiringSpec(
            "complete",
            (),
            "every candidate edge (the dense reference); the budget is not applied",
            dense=True,
            trains_complete=True,
        ),
        WiringSpec(
            "targeted_dropout",
            (
                ParamSpec("rho", "float", 0.95, minimum=0),
                ParamSpec("scope", "str", "graph", choices=("graph", "node")),
            ),
            "while training, each edge outside the top k is dropped with probability rho; at evaluation all are",
            positional=("rho",),
            pools=True,
            stochastic_mask=True,
        ),
        WiringSpec(
            "l1_anneal",
            (
                ParamSpec("strength", "float", 1e-4, minimum=0),
                ParamSpec("end", "float", 0.75, minimum=0),
            ),
            "L1 on the edge weights and a magnitude threshold annealed so that exactly k edges remain from `end` (a fraction of training) on",
            positional=("strength",),
            anneals=True,
            regularizer="l1",
        ),
        WiringSpec(
            "fixed",
            (),
            "an explicit list of edges (`wiring fixed { ... }`), e.g. exported from a run",
            mask_fixed_at_start=True,
            edges_listed=True,
        ),
        WiringSpec(
            "lottery_one_shot",
            (),
            "train complete, keep the top k final weights, rewind them to their initial values, retrain with the mask fixed",
            pools=True,
            trains_complete=True,
            second_phase="rewind",
        ),
        WiringSpec(
            "fine_tune",
            (),
            "train complete, fix the top-k mask, continue training",
            pools=True,
            trains_complete=True,
            second_phase="continue",
        ),
    ]
}

# The method of a sparse layer or graph that names none.
DEFAULT_WIRING = "dnw"


def new_wiring(method: str, span: Span = UNKNOWN, **params: object) -> core.Wiring:
    """The typed IR wiring of `method` (`core.WIRING_TYPES`) with `params`, every parameter not
    given at its registry default: for code that names a method without a spec's call (the
    per-layer default, `wirelang.sparsify`). The builder binds a spec's call itself."""
    spec = WIRINGS[method]
    given = {p.name: params.pop(p.name) if p.name in params else p.default for p in spec.params}
    return core.WIRING_TYPES[method](span=span, **given, **params)


def ranks_square(wiring: core.Wiring) -> bool:
    """Whether the wiring ranks its graph's whole nodes x nodes square (`dnw(rank=square)`),
    not only the candidates (see `RANKS`); a method without a `rank` ranks its candidates."""
    return getattr(wiring, "rank", "candidates") == "square"


ODE_SOLVERS = (
    "dopri5",
    "dopri8",
    "bosh3",
    "fehlberg2",
    "adaptive_heun",
    "euler",
    "midpoint",
    "rk4",
    "explicit_adams",
    "implicit_adams",
)
FIXED_STEP_SOLVERS = ("euler", "midpoint", "rk4", "explicit_adams", "implicit_adams")

# Derivative evaluations per step of torchdiffeq's fixed-grid solvers. `explicit_adams` needs three
# past derivatives, so its first ADAMS_WARMUP steps are rk4 steps (4 evaluations each);
# `implicit_adams` iterates its corrector until it converges, a data-dependent count, so it has
# none (its `nfe` is measured). tests/test_evaluations.py compares these with the solver's count.
EVALUATIONS_PER_STEP = {"euler": 1, "midpoint": 2, "rk4": 4, "explicit_adams": 1}
ADAMS_WARMUP = 2


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def fixed_grid_steps(time: float, step_size: float) -> int:
    """Steps torchdiffeq's fixed-grid solvers take over [0, time]: its grid has
    ceil(time / step_size + 1) points, computed in float32 (the states' dtype), the last moved
    onto `time`. float32 is mimicked here so the count matches the solver's to the step."""
    return math.ceil(_f32(_f32(_f32(time) / _f32(step_size)) + 1.0)) - 1


def evaluations_per_forward(sem: core.Semantics) -> int | None:
    """How many times one forward pass evaluates a graph: 1 static, T in discrete time, and in
    continuous time with a fixed-step solver steps x evaluations per step; None for adaptive
    solvers (and implicit Adams), whose count depends on the data."""
    if not isinstance(sem, core.ContinuousSemantics):
        return sem.steps
    per_step = EVALUATIONS_PER_STEP.get(sem.solver)
    if per_step is None or sem.step_size is None:
        return None
    steps = fixed_grid_steps(sem.time, sem.step_size)
    warmup = min(steps, ADAMS_WARMUP) if sem.solver == "explicit_adams" else 0
    return per_step * (steps - warmup) + EVALUATIONS_PER_STEP["rk4"] * warmup


SEMANTICS: dict[str, MethodSpec] = {
    m.name: m
    for m in [
        MethodSpec("static", (), "a DAG evaluated once, sets in topological order"),
        MethodSpec(
            "discrete",
            (ParamSpec("steps", "int", 5, minimum=1),),
            "T synchronous steps of the whole graph; cycles allowed",
            positional=("steps",),
        ),
        MethodSpec(
            "continuous",
            (
                ParamSpec("time", "float", 1.0, minimum=0),
                ParamSpec("solver", "str", "dopri5", choices=ODE_SOLVERS),
                ParamSpec("rtol", "float", 1e-3, minimum=0),
                ParamSpec("atol", "float", 1e-3, minimum=0),
                ParamSpec("adjoint", "bool", False),
                ParamSpec("step_size", "float?", None, minimum=0),
            ),
            "dZ/dt = f(sum w Z) on [0, time], integrated with torchdiffeq",
            positional=("time",),
        ),
    ]
}


# What one forward pass may cost in graph evaluations: beyond these a spec that checks would
# hang in `train` or `load` (a billion discrete steps, a step size of 1e-300). The builder
# (`passes/graph_build.py`) refuses semantics outside them.
MAX_STEPS = 10_000
TIME_RANGE = (1e-6, 1e6)
TOLERANCE_RANGE = (1e-12, 1.0)
# A fixed-step solver without `step_size` takes this many steps over `time`.
DEFAULT_FIXED_STEPS = 10

# How a graph's edge weights are drawn before training (`init ...` in a graph). The scale matters
# to DNW beyond the usual reasons: every node normalises its summed input, so the loss hardly
# depends on the scale of a node's incoming weights, their gradient shrinks as that scale grows,
# and the relative change per step, which decides how fast edges swap in and out of the top k,
# falls with its square. The default is the authors' networks' own: their graph is one 1x1
# convolution from every sending node, with PyTorch's default initialisation.
INITS: dict[str, MethodSpec] = {
    m.name: m
    for m in [
        MethodSpec(
            "uniform",
            (ParamSpec("fan", "int?", None, minimum=1),),
            "U(-1/sqrt(fan), 1/sqrt(fan)), PyTorch's default for a 1x1 convolution with `fan` inputs; "
            "`fan` defaults to the number of nodes that send along some candidate edge (the default)",
            positional=("fan",),
        ),
        MethodSpec(
            "normal",
            (ParamSpec("std", "float", required=True, minimum=0),),
            "N(0, std^2)",
            positional=("std",),
        ),
        MethodSpec(
            "kaiming",
            (),
            "N(0, 2 / d) with d the mean in-degree at the budget (k / receiving nodes)",
        ),
    ]
}
DEFAULT_INIT = "uniform"


def list_inits() -> list[str]:
    return sorted(INITS)


def list_wirings() -> list[str]:
    return sorted(WIRINGS)


def list_semantics() -> list[str]:
    return sorted(SEMANTICS)
