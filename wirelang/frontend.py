"""The front end as one list: read -> parse -> expand -> passes -> checked IR.

    build("specs/cifar_tiny.wire") -> ir.core.Network

Each pass takes the network and a Reporter and returns a new network; problems are collected,
and the pipeline stops after the first pass that found any (later passes would only repeat
them). Nothing here imports torch, so `wirelang check` stays fast.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from wirelang import train_config
from wirelang.diagnostics import Diagnostic, Reporter, SpecError, SpecWarning
from wirelang.ir import core
from wirelang.passes.check import check_graphs, check_pools
from wirelang.passes.expand import AUTO_STAND_IN, expand
from wirelang.passes.limits import check_limits
from wirelang.passes.load import load
from wirelang.passes.pool_shares import warn_starved_members
from wirelang.passes.settings import check_train
from wirelang.passes.shapes import infer_shapes
from wirelang.passes.sparse import apply_sparse

Pass = Callable[[core.Network, Reporter], core.Network]


class ClassesFromData(SpecError):
    """`classes auto` over `data folder`, built without the count: a valid spec whose class
    count is only known once its data folder is read. `network` is the checked IR built with
    AUTO_STAND_IN classes (its train block says where the data is); `warnings` are the spec's
    warnings, not yet emitted (a build with the count emits them)."""

    def __init__(self, diagnostic: Diagnostic, network: core.Network, warnings: list[Diagnostic]):
        super().__init__([diagnostic])
        self.network, self.warnings = network, warnings


def passes(extras: dict) -> list[tuple[str, Pass]]:
    return [
        # Shapes after a dropped layer or graph would be wrong: then expand's errors are all.
        ("shapes", infer_shapes if extras.get("complete", True) else lambda net, rep: net),
        ("graphs", check_graphs),
        ("limits", check_limits),
        (
            "sparse",
            lambda net, rep: apply_sparse(
                net, extras.get("sparse", []), extras.get("sparse_scope"), rep
            ),
        ),
        ("pools", check_pools),
        ("pool shares", warn_starved_members),
        ("train", check_train),
    ]


def build(
    path: str | Path,
    text: str | None = None,
    verify: Callable[[str, core.Network], None] | None = None,
    include_paths: Sequence[str | Path] = (),
    classes: int | None = None,
) -> core.Network:
    """Compile a spec to the checked IR, or raise SpecError with every problem found.

    `verify(pass_name, network)` runs after each pass (the tests use it to check invariants).
    `include_paths`: folders besides the spec's project that its includes may read.
    `classes`: the count `classes auto` stands for (ignored by a spec that writes a count).
    Without it, `auto` takes the count of a dataset that has one (`cifar10`: 10); over
    `data folder` it raises ClassesFromData (a SpecError) once the spec is otherwise valid.
    """
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)):
        raise TypeError(f"classes must be an int, not {type(classes).__name__}")
    if classes is not None and classes < 1:
        raise ValueError(f"classes must be at least 1, not {classes}")
    # A large spec makes hundreds of thousands of small objects and no reference cycles; the
    # cyclic collector's passes over them took a fifth of the time. It is paused while building.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _build(path, text, verify, include_paths, classes)
    finally:
        if enabled:
            gc.enable()


def _build(
    path: str | Path,
    text: str | None,
    verify: Callable[[str, core.Network], None] | None,
    include_paths: Sequence[str | Path],
    classes: int | None,
) -> core.Network:
    program = load(path, text, include_paths)
    net, rep, extras = expand(program, classes)
    auto = extras.get("classes_auto")
    if auto is not None and net is not None:
        data = train_config.data_name(net.train.get("data", "synthetic"))
        count = train_config.fixed_classes(data)
        if count is not None:  # the dataset says how many: expand again with its count
            net, rep, extras = expand(program, count)
            auto = None
        elif data != "folder":
            rep.error(
                auto,
                "`classes auto` is the number of class folders of `data folder(...)`; "
                f"`{data}` has no class count of its own",
                "write the count: `classes N`",
            )
    # Shapes are worth inferring after errors in the train block, but not after a dropped
    # layer or graph (see passes()); a network that failed to expand has nothing more to say.
    if net is None:
        rep.raise_if_any()
        raise AssertionError("expand returned no network without an error")  # pragma: no cover
    for name, run in passes(extras):
        try:
            net = run(net, rep)
        except SpecError:
            raise
        except Exception as err:  # an internal failure: name the pass and the ones before it
            done = [n for n, _ in passes(extras)][: [n for n, _ in passes(extras)].index(name)]
            raise RuntimeError(
                f"internal error in pass `{name}` (after {', '.join(['expand'] + done)}): {err!r}"
            ) from err
        if verify is not None:
            verify(name, net)
        rep.raise_if_any()
    if auto is not None:
        raise ClassesFromData(
            Diagnostic(
                auto,
                "`classes auto` is the number of class folders of the training data, "
                "which is read only when training starts",
                "train the spec (`wirelang train`), or write the count: `classes N`",
            ),
            net,
            rep.warnings,
        )
    rep.emit_warnings()
    return net


def check_file(path: str | Path) -> list:
    """Diagnostics for one file: errors, warnings and notes (empty when it is valid and clean).

    `classes auto` over `data folder` is valid: a note says where the count will come from."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SpecWarning)
        try:
            build(path)
        except ClassesFromData as err:
            return [*err.warnings, auto_note(err)]
        except SpecError as err:
            return list(err.diagnostics)
    return [w.message.diagnostic for w in caught if isinstance(w.message, SpecWarning)]


def auto_note(err: ClassesFromData) -> Diagnostic:
    """What `check` says of `classes auto` over `data folder`."""
    return Diagnostic(
        err.diagnostics[0].span,
        "`classes auto`: the class count is the number of class folders of the training data, "
        f"counted when training starts (checked here with {AUTO_STAND_IN} classes)",
        severity="note",
    )
