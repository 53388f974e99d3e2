"""Wiring methods and semantics: their names and parameters, torch-free.

The backend's mask implementations (`wirelang.backend.masks`) are registered under the same
names; a test checks both registries list the same methods.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from wirelang.ir import core
from wirelang.ops import ParamSpec


@dataclass(frozen=True)
class MethodSpec:
    name: str
    params: tuple[ParamSpec, ...]
    doc: str
    two_phase: bool = False  # trains the complete graph first, then a fixed mask
    positional: tuple[str, ...] = ()
    # Under a pooled budget, ranks all members' weights together (one top k over the pool);
    # otherwise each member keeps its own share of the pool's k (`wirelang.cost.budget_k`). A pool
    # that allocates per member (`allocate=erk|uniform`) gives every member its own k whatever
    # the method (`wirelang.cost.ranks_jointly`).
    pools: bool = False

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)


# What DNW's top k ranks. `candidates`: the graph's candidate edges only. `square`: every entry of
# the graph's nodes x nodes matrix, as the authors' code ranks its whole 800 x 800 weight; the
# entries that are not candidates hold fixed magnitudes drawn from the graph's `init` and never
# carry an edge, so part of k sits on them while the candidates' weights are small: the graph
# starts sparser than k and fills up as the weights of useful edges grow.
RANKS = ("candidates", "square")

WIRINGS: dict[str, MethodSpec] = {
    m.name: m
    for m in [
        MethodSpec(
            "dnw",
            (ParamSpec("rank", "str", "candidates", choices=RANKS, implicit=True),),
            "top-k edges by |w| forward, straight-through gradient to every candidate",
            pools=True,
        ),
        MethodSpec(
            "dnw_no_update",
            (),
            "top-k edges by |w| forward, no gradient to edges outside the top k",
            pools=True,
        ),
        MethodSpec(
            "random",
            (ParamSpec("seed", "int?", None, minimum=0),),
            "a fixed random set of k candidates, chosen once from the seed",
            positional=("seed",),
        ),
        MethodSpec(
            "complete", (), "every candidate edge (the dense reference); the budget is not applied"
        ),
        MethodSpec(
            "targeted_dropout",
            (
                ParamSpec("rho", "float", 0.95, minimum=0),
                ParamSpec("scope", "str", "graph", choices=("graph", "node")),
            ),
            "while training, each edge outside the top k is dropped with probability rho; at evaluation all are",
            positional=("rho",),
            pools=True,
        ),
        MethodSpec(
            "l1_anneal",
            (
                ParamSpec("strength", "float", 1e-4, minimum=0),
                ParamSpec("end", "float", 0.75, minimum=0),
            ),
            "L1 on the edge weights and a magnitude threshold annealed so that exactly k edges remain from `end` (a fraction of training) on",
            positional=("strength",),
        ),
        MethodSpec(
            "fixed",
            (),
            "an explicit list of edges (`wiring fixed { ... }`), e.g. exported from a run",
        ),
        MethodSpec(
            "lottery_one_shot",
            (),
            "train complete, keep the top k final weights, rewind them to their initial values, retrain with the mask fixed",
            two_phase=True,
            pools=True,
        ),
        MethodSpec(
            "fine_tune",
            (),
            "train complete, fix the top-k mask, continue training",
            two_phase=True,
            pools=True,
        ),
    ]
}


def wiring_param(wiring: core.Wiring, name: str) -> object:
    """A wiring parameter's value; an `implicit` one left out at its default gets the default."""
    if name in wiring.params:
        return wiring.params[name]
    spec = WIRINGS[wiring.method].param(name)
    if spec is None:
        raise KeyError(f"wiring method {wiring.method!r} has no parameter {name!r}")
    return spec.default


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
