"""ImageNet (or any dataset in the same layout) from class-per-folder images.

Layout: `root/train/<class>/<image>` and `root/val/<class>/<image>`, read with torchvision's
ImageFolder. `root/val` is the test split (ImageNet's labelled validation set); the
validation split used during training is held out of `root/train` by `build_datasets`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .registry import (
    DataError,
    DatasetInfo,
    DatasetSource,
    SourceData,
    missing_message,
    register_dataset,
    reject_options,
)


def load_rgb(path: str) -> Any:
    """ImageFolder loader that names the file when an image cannot be read: a dangling link, a
    FIFO or device (never waited on), a truncated or corrupt file, or a decompression bomb
    (PIL's pixel limit is kept)."""
    from PIL import Image  # lazy: only needed once items are actually read

    try:
        # O_NONBLOCK: opening a FIFO named like an image must not wait for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise DataError(f"{path}: not a regular file")
            with Image.open(f) as image:
                return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: refused, too many pixels ({exc})") from None
    except OSError as exc:  # includes PIL.UnidentifiedImageError and truncated files
        raise DataError(f"{path}: cannot read image ({exc})") from None


class TransformedDataset(Dataset):
    """Applies `transform` to the image of `base`'s items.

    One ImageFolder scan (slow: a million files for ImageNet) is shared between the
    augmented training view and the eval-transform validation view.
    """

    def __init__(self, base: Any, transform: Callable[[Any], torch.Tensor]) -> None:
        self.base = base
        self.transform = transform

    @property
    def targets(self) -> list[int]:
        return list(self.base.targets)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[index]
        return self.transform(image), int(label)


def image_folder(path: Path) -> Any:
    """An ImageFolder over `path` without transforms; DataError if it has no usable classes."""
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(path), loader=load_rgb)
    except FileNotFoundError as exc:
        # torchvision raises this both for "no class folders" and "a class folder with no
        # images"; its own text says which.
        raise DataError(
            f"{path}: not a usable ImageFolder ({exc}); expected one sub-folder per class, "
            f"e.g. {path}/<class>/<image>.JPEG"
        ) from None


def imagenet_transforms(
    size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]:
    """(train, eval) transforms: the standard ResNet recipe, scaled to `size`."""
    from torchvision import transforms as T

    # Resize to 256 then crop 224 is the usual 0.875 centre crop; keep that ratio for
    # other sizes so eval sees the same field of view.
    resize = round(min(size) * 256 / 224)
    train = T.Compose(
        [
            T.RandomResizedCrop(size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    evaluate = T.Compose(
        [T.Resize(resize), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)]
    )
    return train, evaluate


@register_dataset("imagenet")
class ImageNetSource(DatasetSource):
    info = DatasetInfo("imagenet", 3, 224, 224, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    how_to_get = (
        "Pass --data-root DIR pointing to the folder that holds train/ and val/, each with "
        "one sub-folder per class (ImageNet's val images must first be sorted into class "
        "folders)."
    )

    def load(
        self,
        root: Path | None,
        *,
        augment: bool,
        download: bool,
        image_size: tuple[int, int] | None,
        **options: Any,
    ) -> SourceData:
        name = self.info.name
        reject_options(name, options)
        wanted = ["train/<class>/<images>", "val/<class>/<images>"]
        if root is None:
            raise DataError(
                f"{name}: no data folder given; looked for {', '.join(wanted)}. {self.how_to_get}"
            )
        missing = [w for w in wanted if not (root / w.split("/")[0]).is_dir()]
        if missing:
            raise DataError(missing_message(name, root, missing, self.how_to_get))
        train_base = image_folder(root / "train")
        test_base = image_folder(root / "val")
        if train_base.classes != test_base.classes:
            only_train = sorted(set(train_base.classes) - set(test_base.classes))
            only_val = sorted(set(test_base.classes) - set(train_base.classes))
            raise DataError(
                f"{root / 'val'}: class folders differ from {root / 'train'} "
                f"(only in train: {only_train[:5]}, only in val: {only_val[:5]}); "
                f"labels would not line up"
            )
        size = image_size or (self.info.height, self.info.width)
        # Subsets of ImageNet (or other datasets in this layout) have fewer classes; the
        # model's head must match the folders actually present.
        info = replace(self.info, height=size[0], width=size[1], classes=len(train_base.classes))
        train_tf, eval_tf = imagenet_transforms(size, info.mean, info.std)
        train_eval = TransformedDataset(train_base, eval_tf)
        train = TransformedDataset(train_base, train_tf) if augment else train_eval
        test = TransformedDataset(test_base, eval_tf)
        return SourceData(train=train, train_eval=train_eval, test=test, info=info)


def folder_transforms(
    size: tuple[int, int], channels: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[Callable[[Any], torch.Tensor], Callable[[Any], torch.Tensor]]:
    """(train, eval) transforms for images of any size and mode: grey or colour converted to
    `channels`, the short side resized to 8/7 of the input's larger side, then a random (train, with a
    horizontal flip) or centre (eval) crop to the input's size."""
    from torchvision import transforms as T

    mode = "L" if channels == 1 else "RGB"
    resize = round(max(size) * 8 / 7)  # the short side: every crop then fits
    convert = T.Lambda(lambda image: image.convert(mode))
    train = T.Compose(
        [
            convert,
            T.Resize(resize),
            T.RandomCrop(size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
    evaluate = T.Compose(
        [convert, T.Resize(resize), T.CenterCrop(size), T.ToTensor(), T.Normalize(mean, std)]
    )
    return train, evaluate


def channel_stats(
    base: Any, size: tuple[int, int], channels: int, limit: int = 1000
) -> tuple[tuple, tuple]:
    """Per-channel mean and std of up to `limit` training images (evenly spaced, so the same
    images every time), after the eval resize and crop."""
    _, plain = folder_transforms(size, channels, (0.0,) * channels, (1.0,) * channels)
    step = max(1, len(base) // limit)
    xs = torch.stack([plain(base[i][0]) for i in range(0, len(base), step)[:limit]])
    mean = xs.mean(dim=(0, 2, 3))
    std = xs.std(dim=(0, 2, 3)).clamp_min(1e-3)  # a constant channel is not divided by zero
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


@register_dataset("folder")
class FolderSource(DatasetSource):
    """Your own images: `root/<class>/<image>` (every image for training; `data.val` holds
    some out for validation; no test split), or `root/train/<class>/...` with an optional
    `root/test/<class>/...` (or `root/val/...`) as the test split. Any number of classes (it
    must equal the network's `classes`), images of any size, grey or colour."""

    info = DatasetInfo("folder", 3, 224, 224, 0, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    how_to_get = (
        'Pass --data-root DIR (or `data folder(root="DIR")`) pointing to DIR/<class>/<image> files.'
    )

    def _train_dir(self, root: Path | None) -> Path:
        """The folder of the training split's class folders: `root/train` when it exists (the
        split layout), else `root` itself (the flat one)."""
        if root is None or not root.is_dir():
            raise DataError(f"folder: {root} is not a folder. {self.how_to_get}")
        return root / "train" if (root / "train").is_dir() else root

    def count_classes(self, root: Path | None) -> int:
        """The class folders of the training split, found as ImageFolder finds them when the
        data is loaded (so `classes auto` and the labels agree)."""
        from torchvision.datasets.folder import find_classes

        train_dir = self._train_dir(root)
        try:
            names, _ = find_classes(train_dir)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(
                f"folder: {train_dir}: no class folders ({exc}); expected "
                f"{train_dir}/<class>/<image>"
            ) from None
        return len(names)

    def load(
        self,
        root: Path | None,
        *,
        augment: bool,
        download: bool,
        image_size: tuple[int, int] | None,
        channels: int = 3,
        classes: int | None = None,
        **options: Any,
    ) -> SourceData:
        reject_options("folder", options)
        train_dir = self._train_dir(root)
        split_root = train_dir != root
        train_base = image_folder(train_dir)
        test_dir = next(
            (root / n for n in ("test", "val") if split_root and (root / n).is_dir()), None
        )
        test_base = image_folder(test_dir) if test_dir is not None else None
        if classes is not None and len(train_base.classes) != classes:
            names = ", ".join(train_base.classes[:8]) + (
                ", ..." if len(train_base.classes) > 8 else ""
            )
            raise DataError(
                f"folder: {train_base.root} has {len(train_base.classes)} class folders ({names}) but the "
                f"network declares `classes {classes}`; write `classes {len(train_base.classes)}`"
            )
        if test_base is not None and test_base.classes != train_base.classes:
            raise DataError(
                f"{test_dir}: class folders differ from {train_base.root}; labels would not line up"
            )
        size = image_size or (self.info.height, self.info.width)
        mean, std = channel_stats(train_base, size, channels)
        info = replace(
            self.info,
            channels=channels,
            height=size[0],
            width=size[1],
            classes=len(train_base.classes),
            mean=mean,
            std=std,
        )
        train_tf, eval_tf = folder_transforms(size, channels, mean, std)
        train_eval = TransformedDataset(train_base, eval_tf)
        train = TransformedDataset(train_base, train_tf) if augment else train_eval
        test = TransformedDataset(test_base, eval_tf) if test_base is not None else None
        return SourceData(train=train, train_eval=train_eval, test=test, info=info)
