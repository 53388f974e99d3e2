"""Memory a network needs, estimated from the IR before anything is allocated, and the memory
this machine has: `wirelang train` and `wirelang.load` refuse a network that cannot fit.

    estimate(net, batch=128, optimizer="sgd", momentum=0.9) -> Estimate (bytes per part)
    refusal(net, ...) -> the one-line message, or None when it fits

What is counted (float32, 4 bytes a number):

- weights: every stored weight (a graph stores all its candidate edges, a sparse layer all its
  entries; `passes.limits` counts them), and per masked weight its mask buffers and the masked
  copy the forward pass keeps for backward;
- gradients: one per stored weight; optimizer state: SGD momentum one buffer per weight (none
  without momentum), AdamW two; an EMA of the weights one more;
- activations: per item of the batch each process runs, the output of every layer and, in a
  graph, each set's state, summed input and operator outputs and the sending states gathered
  once, for every evaluation that keeps activations for backward (discrete steps; continuous
  solver evaluations, one with the adjoint method, each with the solver's own SOLVER_FACTOR);
  multiplied by ACTIVATION_FACTOR, measured;
- the runtime: RUNTIME_BYTES for the Python process with torch loaded, measured;
- the dataset, where it is held in memory: its images and labels as the loader holds them
  (CIFAR, MNIST, Fashion-MNIST: uint8 images and int64 labels; synthetic data: its labels),
  given by the caller (`wirelang.data.dataset_bytes`, read from the files' headers or the
  dataset's fixed size; 0 for images read from a folder on demand and for datasets passed
  from Python, which are in memory already). Every process holds its own copy.

`benchmarks/memory_estimate.py` measures the real peak (max RSS) of training steps of shipped
specs and compares it with this estimate (`benchmarks/results/memory.md`). What loading a
dataset allocates for a moment (CIFAR's batches are concatenated, an IDX file is decompressed
and copied) is not counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from wirelang.ir import core
from wirelang.methods import WIRINGS, evaluations_per_forward
from wirelang.ops import sparse_candidates
from wirelang.passes.limits import ENV_VAR, format_bytes, layer_weights, max_bytes, set_weights

BYTES = 4  # float32
MASK_BYTES = 1 + 1 + 4  # per masked weight: its `fixed` and active masks (bool), the masked copy
SCORE_BYTES = 4  # |w| ranked by the top-k, per weight of the largest wiring (transient)
# Bytes held per activation element counted below, in float32 numbers: backward keeps about one
# saved tensor per layer output (an op's input is the previous op's output); the per-item slope
# measured in benchmarks/results/memory.md checks it.
ACTIVATION_FACTOR = 1
RUNTIME_BYTES = 550 * 10**6  # a Python process with torch and wirelang loaded (max RSS, measured)
# Evaluations per forward pass an adaptive solver keeps for backward: its count depends on the
# data and the weights, so this is an assumption (dopri5 spends 6 a step: four steps and the two
# of its start); the `fmnist_tiny_continuous` rows of benchmarks/results/memory.md test it.
ADAPTIVE_EVALUATIONS = 26
# An ODE solver keeps, per evaluation, its stage (a fresh combination of the state and earlier
# derivatives) and the derivative besides the graph's own activations: measured on dopri5 as about
# as much again (benchmarks/results/memory.md, `fmnist_tiny_continuous`, 26 evaluations).
SOLVER_FACTOR = 2
AVAILABLE_ENV = "WIRELANG_MEMORY_AVAILABLE"  # bytes this machine offers (overrides the probe)


@dataclass(frozen=True)
class Estimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    runtime: int = RUNTIME_BYTES
    data: int = 0  # the dataset held in memory (see the module's docstring)

    @property
    def total(self) -> int:
        return (
            self.weights
            + self.gradients
            + self.optimizer
            + self.activations
            + self.runtime
            + self.data
        )

    def parts(self) -> str:
        named = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer),
            ("activations", self.activations),
            ("runtime", self.runtime),
            ("dataset", self.data),
        ]
        return ", ".join(f"{name} {format_bytes(n)}" for name, n in named if n)


def stored_weights(net: core.Network) -> tuple[int, int, int]:
    """(stored weights, of which masked, the largest single wiring) over the whole network."""
    stored = masked = largest = 0
    for item in net.items:
        if isinstance(item, core.Graph):
            stored += item.candidates + sum(set_weights(s) for s in item.sets)
            if not WIRINGS[item.wiring.method].dense:  # a dense wiring ranks and masks nothing
                masked += item.candidates
                largest = max(largest, item.candidates)
    for layer in net.layers():
        stored += layer_weights(layer)
        if layer.sparse is not None:
            n = sparse_candidates(layer)
            masked += n
            largest = max(largest, n)
    if net.pools:  # a pool ranks all its members together
        largest = max([largest, *(p.candidates for p in net.pools)])
    return stored, masked, largest


def graph_evaluations(g: core.Graph) -> int:
    """Evaluations of the graph whose activations one forward pass keeps for backward: its
    evaluations per forward pass (`methods.evaluations_per_forward`), one with the adjoint method (it
    recomputes them backwards), ADAPTIVE_EVALUATIONS where an adaptive solver decides."""
    sem = g.semantics
    if isinstance(sem, core.ContinuousSemantics) and sem.adjoint:
        return 1
    n = evaluations_per_forward(sem)
    return ADAPTIVE_EVALUATIONS if n is None else n


def _numel(shape: core.Shape | None) -> int:
    return 0 if shape is None else shape.channels * shape.height * shape.width


def graph_activations(g: core.Graph) -> int:
    """Activation elements per item of one forward pass of a graph."""
    hw = {s.name: (s.out_hw or s.in_hw or (1, 1)) for s in g.sets}
    per_eval = 0
    for s in g.sets:
        maps = s.size * hw[s.name][0] * hw[s.name][1]
        per_eval += maps * (2 + len(s.op) + len(s.send))  # summed input, state, each operator
    for name in {b.source for b in g.blocks}:  # the sending states, concatenated once
        size = next(x for x in g.sets if x.name == name).size
        per_eval += size * hw[name][0] * hw[name][1]
    if g.semantics.kind == "continuous":
        per_eval *= SOLVER_FACTOR
    return per_eval * graph_evaluations(g) + _numel(g.in_shape) + _numel(g.out_shape)


def activations_per_item(net: core.Network) -> int:
    total = _numel(net.input)
    for item in net.items:
        if isinstance(item, core.Graph):
            total += graph_activations(item)
        elif isinstance(item, core.Layer):
            total += _numel(item.out_shape)
        else:
            total += sum(_numel(x.out_shape) for x in item.branch + item.shortcut + item.after)
            total += _numel(item.out_shape)  # the sum of branch and shortcut
    return total


def estimate(
    net: core.Network,
    batch: int,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    ema: bool = False,
    training: bool = True,
) -> Estimate:
    """Bytes one process needs: training with `batch` items a step, or (training=False) holding
    the model to load its weights."""
    stored, masked, largest = stored_weights(net)
    if not training:
        return Estimate(weights=stored * BYTES + masked, gradients=0, optimizer=0, activations=0)
    slots = (2 if optimizer == "adamw" else 1 if momentum > 0 else 0) + (1 if ema else 0)
    return Estimate(
        weights=stored * BYTES + masked * MASK_BYTES + largest * SCORE_BYTES,
        gradients=stored * BYTES,
        optimizer=slots * stored * BYTES,
        activations=ACTIVATION_FACTOR * BYTES * batch * activations_per_item(net),
    )


def available_bytes(env: dict[str, str] | None = None) -> tuple[int | None, str]:
    """(bytes this process may still allocate, where the figure comes from): MemAvailable of
    /proc/meminfo, or the cgroup's limit minus its usage when that is lower; `AVAILABLE_ENV`
    overrides both. (None, why) when nothing can be read (not Linux)."""
    env = os.environ if env is None else env
    raw = env.get(AVAILABLE_ENV, "").strip()
    if raw:
        value = max_bytes({ENV_VAR: raw})
        if value is not None:
            return value, AVAILABLE_ENV
    found: list[tuple[int, str]] = []
    meminfo = _read("/proc/meminfo")
    for line in (meminfo or "").splitlines():
        if line.startswith("MemAvailable:"):
            found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
    limit, usage = _read("/sys/fs/cgroup/memory.max"), _read("/sys/fs/cgroup/memory.current")
    if limit and usage and limit.strip().isdigit() and usage.strip().isdigit():
        found.append((int(limit) - int(usage), "the cgroup's memory.max less its usage"))
    if not found:
        return None, "no memory figure readable"
    return min(found)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def refusal(
    net: core.Network,
    need: Estimate,
    available: int | None,
    source: str,
    what: str = "training",
) -> str | None:
    """The one-line refusal when `need` exceeds `available`, else None."""
    if available is None or need.total <= available:
        return None
    hint = (
        "use a smaller batch (`--batch-size`), fewer steps or smaller sets, or a machine with more memory"
        if what.startswith("training")
        else "use smaller sets or layers, or a machine with more memory"
    )
    return (
        f"network `{net.name}` needs about {format_bytes(need.total)} for {what} "
        f"({need.parts()}), but {format_bytes(max(available, 0))} is available ({source}); {hint}"
    )
