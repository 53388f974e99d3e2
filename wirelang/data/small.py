"""`fashion_mnist_small`: a real Fashion-MNIST subset shipped inside the package.

12,000 class-balanced training images and the first 2,000 test images (made by
scripts/make_fmnist_small.py; licence in assets/LICENSE-fashion-mnist.txt). It is always
available, so examples, tests and CI can train on real images with no data installed.
"""

from __future__ import annotations

import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .registry import (
    DataError,
    DatasetInfo,
    DatasetSource,
    SourceData,
    array_source_data,
    check_labels,
    register_dataset,
    reject_options,
)

ASSET = "fashion_mnist_small.npz"
_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def asset_path() -> Any:
    """The bundled file as an importlib Traversable (works from a wheel or a checkout)."""
    return resources.files(__package__).joinpath("assets", ASSET)


def load_small_arrays() -> dict[str, np.ndarray]:
    """The four arrays of the bundled file, checked for shape, dtype and label range."""
    path = asset_path()
    try:
        with path.open("rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in _KEYS if k in npz.files}
    except FileNotFoundError:
        raise DataError(
            f"fashion_mnist_small: bundled file {path} is missing; the wirelang installation "
            f"is incomplete (reinstall it, or run scripts/make_fmnist_small.py in a checkout)"
        ) from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: corrupt bundled dataset ({exc})") from None
    if set(arrays) != set(_KEYS):
        raise DataError(f"{path}: missing arrays {sorted(set(_KEYS) - set(arrays))}")
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{path}: {split}_images must be uint8 N x 28 x 28")
        if labels.shape != (images.shape[0],):
            raise DataError(f"{path}: {split}_labels does not match {split}_images")
    return arrays


@register_dataset("fashion_mnist_small")
class FashionMnistSmallSource(DatasetSource):
    # Statistics of the subset's training pixels (printed by the generating script); they
    # differ from full Fashion-MNIST's 0.2860 / 0.3530 only in the third decimal.
    info = DatasetInfo("fashion_mnist_small", 1, 28, 28, 10, (0.2870,), (0.3536,))

    def held_bytes(self, root: Path | None, **options: Any) -> int:
        # The bundled file is small (6 MB): its arrays are read to count them exactly.
        try:
            arrays = load_small_arrays()
        except DataError:
            return 0  # loading reports it
        return sum(
            arrays[f"{s}_images"].nbytes + 8 * len(arrays[f"{s}_labels"]) for s in ("train", "test")
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
        """`root` and `download` are ignored: the data ships with the package."""
        reject_options(self.info.name, options)
        arrays = load_small_arrays()
        tensors = {}
        for split in ("train", "test"):
            labels = torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64))
            check_labels(labels, self.info.classes, f"{asset_path()} ({split}_labels)")
            images = torch.from_numpy(arrays[f"{split}_images"]).unsqueeze(1)
            tensors[split] = (images, labels)
        return array_source_data(
            self.info,
            *tensors["train"],
            *tensors["test"],
            augment=augment,
            crop_padding=2,
            flip=True,  # same augmentation as the full fashion_mnist
            image_size=image_size,
        )
