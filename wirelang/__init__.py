"""wirelang: a compiler for neural-network wirings learned with Discovering Neural Wirings.

    >>> import wirelang
    >>> model = wirelang.load("specs/cifar_tiny.wire")      # an nn.Module
    >>> net = wirelang.check("specs/cifar_tiny.wire")       # the checked IR, torch-free
    >>> result = wirelang.train("my.wire", train_data=train_set, val_data=val_set, out="runs/m")
    >>> model = wirelang.load(result.run_dir)               # the run's best checkpoint

Heavy modules (torch) are imported only when a function that needs them is called.
"""

from __future__ import annotations

# Loaded before `export` is defined below: importing a subpackage the first time sets it as an
# attribute of its parent, which would otherwise replace the function `wirelang.export` with the
# package `wirelang.export`.
import wirelang.export as _export_package  # noqa: F401

# `wirelang.train` is the training package, and calling it is `wirelang.train.fit`: one name
# for `wirelang.train(spec, train_data=...)` and `from wirelang.train import TrainOptions`
# (a function of that name would be replaced by the package as soon as it is imported, and
# `import wirelang.train as t` would give the function). Importing the package is torch-free.
from wirelang import train
from wirelang.version import LANGUAGE_VERSION, __version__

__all__ = ["LANGUAGE_VERSION", "__version__", "check", "export", "load", "sparsify", "train"]


def check(path, include_paths=(), classes=None):
    """Parse and check a spec; return its IR (`wirelang.ir.core.Network`) or raise SpecError.

    `include_paths`: folders its includes may read besides the spec's own project folder.
    `classes`: the count `classes auto` stands for; without it, `classes auto` over
    `data folder` raises `wirelang.frontend.ClassesFromData` (the count is in the data).
    """
    from wirelang.frontend import build

    return build(path, include_paths=include_paths, classes=classes)


def load(path_or_run, weights=None):
    """A spec file or a run directory as an `nn.Module`; `weights` loads a run's checkpoint
    into a spec (a frozen export of that run, say).

    >>> model = wirelang.load("runs/quickstart")              # the run's best checkpoint
    """
    from wirelang.runs.load import load as _load

    return _load(path_or_run, weights=weights)


def sparsify(model, budget, method="dnw", exclude=(), pooled=False, seed=0, allocate=None):
    """Make the conv and linear weights of an existing model DNW-sparse (in place); returns it.

    `budget` is a fraction when it is a float (0.1 keeps 10% of each layer's weights, 1.0 keeps
    them all) and a count of weights per layer when it is an int (so `budget=1` keeps ONE weight
    per layer; write 1.0 for dense).

    `allocate` shares the budget over all layers, as a spec's `pool ... allocate=` does: the
    fraction (or count) is then of all their weights together, and `"global"` ranks them all
    at once (the same as `pooled=True`), `"uniform"` gives each layer the same fraction of its
    own weights, `"erk"` the Erdos-Renyi-Kernel densities of RigL (small layers denser); both
    keep exactly that k per layer. Default `"layer"`: each layer its own budget, nothing shared.

    >>> import torchvision, wirelang
    >>> m = wirelang.sparsify(torchvision.models.resnet50(), budget=0.1, exclude=["conv1"])
    """
    from wirelang.backend.sparsify import sparsify as _sparsify

    return _sparsify(
        model,
        budget=budget,
        method=method,
        exclude=exclude,
        pooled=pooled,
        seed=seed,
        allocate=allocate,
    )


def export(module, format="pt2", example=None, out=None, check=True):
    """Write a model made by `wirelang.load` (a spec or a run) or `wirelang.sparsify` as a
    program that runs without wirelang; returns the report (largest difference from `module`
    on `example`; for a wirelang model also its compact form, multiply-adds and latency).

    `format`: "pt2" (torch.export, dynamic batch), "onnx" (dynamic batch) or "python" (a
    folder with model.py, importing only torch, and weights.pt). Masks fold into plain
    weights first: the program holds no mask and no top-k. A wirelang model becomes its
    compact model (dead nodes removed, gathered products where few edges survive). `example`:
    an input batch (default for a wirelang model: a random batch of its input shape).

    >>> import torch, torchvision, wirelang
    >>> m = wirelang.sparsify(torchvision.models.resnet18(), budget=0.1)
    >>> wirelang.export(m, "onnx", example=torch.randn(1, 3, 224, 224), out="r18.onnx")
    """
    from pathlib import Path

    from wirelang.export.programs import export_module

    if out is None:
        raise ValueError("export needs `out`: the file to write (a folder for format python)")
    if example is None:
        net = getattr(module, "net", None)
        if net is None:
            raise ValueError("export needs `example`: an input batch for this model")
        import torch

        i = net.input
        example = torch.randn(2, i.channels, i.height, i.width)
    return export_module(module, format, Path(out), example, check=check)
