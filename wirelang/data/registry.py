"""Dataset registry, split logic and the in-memory array dataset shared by the loaders.

Every dataset is a `DatasetSource` registered under a name. `build_datasets` resolves the
root folder, asks the source for three index-aligned views (train with training transforms,
the same train items with eval transforms, test), then carves the validation split out of
the training files. Keeping the split here, not in each loader, guarantees that every
dataset splits the same way and that validation never sees augmentation.
"""

from __future__ import annotations

import copy
import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch.utils.data import Dataset, Subset


class DataError(Exception):
    """User-facing data problem: one message saying where we looked and how to fix it."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: what a model built for it must accept and emit."""

    name: str
    channels: int
    height: int
    width: int
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass
class Splits:
    """The datasets a training run needs; `val` is None when no validation split was asked."""

    train: Dataset
    val: Dataset | None
    test: Dataset | None  # None: a folder of your own images without a test split
    info: DatasetInfo


@dataclass
class SourceData:
    """What a source hands to `build_datasets`.

    `train` and `train_eval` must hold the same items in the same order: the validation
    split takes its indices from `train_eval` so it gets eval transforms, while the training
    split takes the complementary indices from `train`.
    """

    train: Dataset
    train_eval: Dataset
    test: Dataset | None
    info: DatasetInfo


class DatasetSource(ABC):
    """One registered dataset. Subclasses set `info` (defaults, no disk access) and `load`."""

    info: ClassVar[DatasetInfo]
    # Folder used when the caller passes no root; None means the user must supply one.
    default_root: ClassVar[str | None] = None

    @abstractmethod
    def load(
        self,
        root: Path | None,
        *,
        augment: bool,
        download: bool,
        image_size: tuple[int, int] | None,
        **options: Any,
    ) -> SourceData:
        """Read the dataset; raise DataError for anything the user has to fix."""

    def held_bytes(self, root: Path | None, **options: Any) -> int:
        """Bytes the loaded dataset keeps in memory (the images and labels of every split, as
        `load` holds them), found without loading it. 0 for a source that reads its items on
        demand (a folder of images), and when the files are not there yet (loading then fails
        with its own message)."""
        return 0

    def count_classes(self, root: Path | None) -> int:
        """The number of classes the data at `root` holds (what `classes auto` stands for):
        the fixed count of `info` unless the source counts its files."""
        return self.info.classes


_REGISTRY: dict[str, DatasetSource] = {}
_S = TypeVar("_S", bound=type[DatasetSource])


def register_dataset(name: str) -> Callable[[_S], _S]:
    """Class decorator registering a `DatasetSource` subclass under `name` (timm-style)."""

    def decorator(cls: _S) -> _S:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} is already registered")
        if cls.info.name != name:
            # A mismatch would make dataset_info(name).name disagree with the name used.
            raise ValueError(f"dataset registered as {name!r} but its info says {cls.info.name!r}")
        _REGISTRY[name] = cls()
        return cls

    return decorator


def _source(name: str) -> DatasetSource:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise DataError(f"unknown dataset {name!r}; known datasets: {known}") from None


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def dataset_info(name: str) -> DatasetInfo:
    """Default shape/classes/normalisation of `name`, without touching the disk."""
    return _source(name).info


def _root(source: DatasetSource, root: str | Path | None) -> Path | None:
    if root is not None:
        return Path(root).expanduser()
    if source.default_root is not None:
        return Path(source.default_root).expanduser()
    return None


def dataset_bytes(
    name: str,
    root: str | Path | None = None,
    image_size: tuple[int, int] | None = None,
    **options: Any,
) -> int:
    """Bytes dataset `name` will hold in memory once loaded (`DatasetSource.held_bytes`), from
    its files' headers or its fixed size: nothing is loaded. The arguments are
    `build_datasets`'."""
    source = _source(name)
    if image_size is not None:
        options["image_size"] = image_size
    return source.held_bytes(_root(source, root), **options)


def dataset_classes(name: str, root: str | Path | None = None) -> int:
    """The class count of dataset `name` at `root` (`DatasetSource.count_classes`); for a
    folder of images, its class folders, listed as loading labels them. DataError if the
    folder is not there."""
    source = _source(name)
    return source.count_classes(_root(source, root))


def build_datasets(
    name: str,
    root: str | None = None,
    *,
    val_size: int | float = 0.1,
    augment: bool = True,
    download: bool = False,
    seed: int = 0,
    train_subset: int | None = None,
    image_size: tuple[int, int] | None = None,
    **options: Any,
) -> Splits:
    """Load `name` and split a validation set off its training files.

    `val_size` is a count (int) or a fraction of the training set (float in [0, 1)); the
    split is a `torch.randperm` seeded with `seed`, so it is identical across runs and
    machines. `train_subset` keeps the first N training indices of that same permutation.
    Extra keyword `options` go to the source (e.g. `train_size=` for `synthetic`).
    """
    source = _source(name)
    if image_size is not None:
        image_size = _check_image_size(image_size)
    resolved = _root(source, root)
    data = source.load(
        resolved, augment=augment, download=download, image_size=image_size, **options
    )
    n = len(data.train)  # type: ignore[arg-type]
    if len(data.train_eval) != n:  # type: ignore[arg-type]
        raise RuntimeError(f"{name}: train and train_eval views differ in length")
    n_val = _resolve_val_size(val_size, n, name)
    if train_subset is not None and (isinstance(train_subset, bool) or train_subset < 1):
        raise DataError(f"train_subset must be a positive integer, got {train_subset!r}")

    if n_val == 0 and train_subset is None:
        # Nothing to split: hand back the whole training set without an index indirection.
        return Splits(train=data.train, val=None, test=data.test, info=data.info)

    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
    # Sorting changes which items are picked not at all, but reads files in order (cheaper
    # for ImageFolder) and makes validation iterate in a stable order.
    train = Subset(data.train, sorted(train_idx.tolist()))
    val = Subset(data.train_eval, sorted(val_idx.tolist())) if n_val else None
    return Splits(train=train, val=val, test=data.test, info=data.info)


def _resolve_val_size(val_size: int | float, n: int, name: str) -> int:
    if isinstance(val_size, bool) or not isinstance(val_size, numbers.Real):
        raise DataError(f"val_size must be a count or a fraction, got {val_size!r}")
    if isinstance(val_size, numbers.Integral):
        count = int(val_size)
    else:
        fraction = float(val_size)
        if math.isnan(fraction) or not 0.0 <= fraction < 1.0:
            raise DataError(f"val_size fraction must be in [0, 1), got {val_size}")
        count = round(fraction * n)
    if count < 0 or count >= n:
        raise DataError(
            f"val_size={val_size!r} leaves no training data: {name} has {n} training items"
        )
    return count


def _check_image_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise DataError(f"image_size must be (height, width) positive integers, got {size!r}")
    return (int(size[0]), int(size[1]))


def check_labels(labels: torch.Tensor, classes: int, where: str) -> None:
    """Raise DataError if any label is outside 0..classes-1 (a corrupt or foreign file)."""
    if labels.numel() == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= classes:
        bad = lo if lo < 0 else hi
        raise DataError(f"{where}: label {bad} out of range 0..{classes - 1}")


class ArrayDataset(Dataset):
    """Images held in memory as a uint8 N x C x H x W tensor, transformed per item.

    The small datasets (CIFAR, MNIST-likes) fit in RAM, and doing crop/flip/normalise with
    tensor ops skips the PIL round trip torchvision's datasets do for every item. Random
    numbers come from torch's global RNG, which DataLoader reseeds per worker, so workers
    do not repeat each other's augmentations.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        info: DatasetInfo,
        *,
        crop_padding: int = 0,
        flip: bool = False,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 N x C x H x W tensor")
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.to(torch.int64)
        self.crop_padding = crop_padding
        self.flip = flip
        self.image_size = image_size
        c = images.shape[1]
        self._mean = torch.tensor(info.mean, dtype=torch.float32).view(c, 1, 1)
        self._std = torch.tensor(info.std, dtype=torch.float32).view(c, 1, 1)

    @property
    def targets(self) -> list[int]:
        # Same attribute name as torchvision datasets, for code that counts classes.
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index].to(torch.float32).div_(255.0)
        if self.crop_padding:
            x = _random_crop(x, self.crop_padding)
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        if self.image_size is not None and tuple(x.shape[-2:]) != self.image_size:
            x = torch.nn.functional.interpolate(
                x.unsqueeze(0), size=self.image_size, mode="bilinear", antialias=True
            ).squeeze(0)
        x = (x - self._mean) / self._std
        return x, int(self.labels[index])

    def with_augmentation(self, *, crop_padding: int, flip: bool) -> ArrayDataset:
        """A view sharing this dataset's tensors but with different augmentation."""
        view = copy.copy(self)  # shallow: the image tensor is shared, not duplicated
        view.crop_padding = crop_padding
        view.flip = flip
        return view


def _random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    # Equivalent to torchvision RandomCrop(size, padding) with zero fill: pad, then take a
    # window of the original size at a uniformly random offset.
    h, w = x.shape[-2:]
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    top = int(torch.randint(0, 2 * padding + 1, ()))
    left = int(torch.randint(0, 2 * padding + 1, ()))
    return padded[:, top : top + h, left : left + w]


def array_source_data(
    info: DatasetInfo,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    augment: bool,
    crop_padding: int,
    flip: bool,
    image_size: tuple[int, int] | None,
) -> SourceData:
    """Wrap in-memory uint8 arrays as the three views `build_datasets` expects."""
    if image_size is not None:
        info = replace(info, height=image_size[0], width=image_size[1])
    eval_train = ArrayDataset(train_images, train_labels, info, image_size=image_size)
    train = (
        eval_train.with_augmentation(crop_padding=crop_padding, flip=flip)
        if augment
        else eval_train
    )
    test = ArrayDataset(test_images, test_labels, info, image_size=image_size)
    return SourceData(train=train, train_eval=eval_train, test=test, info=info)


def missing_message(name: str, folder: Path, files: list[str], how: str) -> str:
    """The one message every loader uses for 'dataset not there'."""
    where = f"{folder}" if folder.is_dir() else f"{folder} (folder does not exist)"
    return f"{name}: dataset not found in {where}; looked for {', '.join(files)}. {how}"


def reject_options(name: str, options: dict[str, Any]) -> None:
    """Sources without extra options call this so a typo is an error, not a silent no-op."""
    if options:
        raise DataError(f"{name}: unknown option(s) {', '.join(sorted(options))}")
