"""wirelang: a compiler for neural-network wirings learned with Discovering Neural Wirings.

    >>> import wirelang
    >>> model = wirelang.load("specs/cifar_tiny.wire")      # an nn.Module
    >>> net = wirelang.check("specs/cifar_tiny.wire")       # the checked IR, torch-free
    >>> result = wirelang.train("my.wire", train_data=train_set, val_data=val_set, out="runs/m")
    >>> model = wirelang.load(result.run_dir)               # the run's best checkpoint

Heavy modules (torch) are imported only when a function that needs them is called.
"""

from __future__ import annotations

# `wirelang.train` is the training package, and calling it is `wirelang.train.fit`: one name
# for `wirelang.train(spec, train_data=...)` and `from wirelang.train import TrainOptions`
# (a function of that name would be replaced by the package as soon as it is imported, and
# `import wirelang.train as t` would give the function). Importing the package is torch-free.
from wirelang import train
from wirelang.version import LANGUAGE_VERSION, __version__

__all__ = ["LANGUAGE_VERSION", "__version__", "check", "load", "sparsify", "train"]


def check(path, include_paths=()):
    """Parse and check a spec; return its IR (`wirelang.ir.core.Network`) or raise SpecError.

    `include_paths`: folders its includes may read besides the spec's own project folder.
    """
    from wirelang.frontend import build

    return build(path, include_paths=include_paths)


def load(path_or_run, weights=None):
    """A spec file or a run directory as an `nn.Module`; `weights` loads a run's checkpoint
    into a spec (a frozen export of that run, say).

    >>> model = wirelang.load("runs/quickstart")              # the run's best checkpoint
    """
    from wirelang.runs.load import load as _load

    return _load(path_or_run, weights=weights)


def sparsify(model, budget, method="dnw", exclude=(), pooled=False, seed=0):
    """Make the conv and linear weights of an existing model DNW-sparse (in place); returns it.

    `budget` is a fraction when it is a float (0.1 keeps 10% of each layer's weights, 1.0 keeps
    them all) and a count of weights per layer when it is an int (so `budget=1` keeps ONE weight
    per layer; write 1.0 for dense). With `pooled=True` the budget covers all layers together.

    >>> import torchvision, wirelang
    >>> m = wirelang.sparsify(torchvision.models.resnet50(), budget=0.1, exclude=["conv1"])
    """
    from wirelang.backend.sparsify import sparsify as _sparsify

    return _sparsify(model, budget=budget, method=method, exclude=exclude, pooled=pooled, seed=seed)
