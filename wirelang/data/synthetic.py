"""`synthetic`: deterministic random images whose labels a model can actually learn.

Each class has a fixed smooth random pattern (its "prototype"); an item is its class's
prototype plus per-item Gaussian noise. The prototypes are low-frequency, so a small
convolutional network separates the classes quickly, which is what a benchmark or a smoke
test needs. Items are generated on demand from (data_seed, split, index), so the dataset
costs no memory, needs no files, and every run sees exactly the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .registry import DataError, DatasetInfo, DatasetSource, SourceData, register_dataset

_TRAIN, _TEST = 0, 1


class SyntheticImages(Dataset):
    """`size` items of shape `shape`; labels balanced over `prototypes.shape[0]` classes."""

    def __init__(
        self,
        prototypes: torch.Tensor,
        size: int,
        *,
        data_seed: int,
        split: int,
        signal: float = 1.0,
        noise: float = 1.0,
    ) -> None:
        self.prototypes = prototypes
        self.size = size
        self.data_seed = data_seed
        self.split = split
        self.noise = noise
        self.signal = signal
        # Rescale so pixels are ~N(0, 1): the info's mean 0 / std 1 are then honest.
        self._scale = 1.0 / math.sqrt(signal**2 + noise**2)
        classes = prototypes.shape[0]
        gen = torch.Generator().manual_seed(self._seed(2**31 - 1))
        self.labels = (torch.arange(size) % classes)[torch.randperm(size, generator=gen)]

    def _seed(self, index: int) -> int:
        # Distinct, reproducible stream per (data_seed, split, index); fits torch's 64 bits.
        return ((self.data_seed & 0xFFFFFFFF) << 32) | (self.split << 31) | index

    @property
    def targets(self) -> list[int]:
        return self.labels.tolist()

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} items")
        label = int(self.labels[index])
        gen = torch.Generator().manual_seed(self._seed(index))
        noise = torch.randn(self.prototypes.shape[1:], generator=gen)
        image = (self.signal * self.prototypes[label] + self.noise * noise) * self._scale
        return image, label


def make_prototypes(
    classes: int, channels: int, height: int, width: int, data_seed: int
) -> torch.Tensor:
    """One smooth unit-variance pattern per class (upsampled coarse noise)."""
    gen = torch.Generator().manual_seed(data_seed)
    coarse = torch.randn(classes, channels, max(1, height // 8), max(1, width // 8), generator=gen)
    smooth = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    flat = smooth.flatten(1)
    flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True).clamp_min(1e-6)
    return flat.view(classes, channels, height, width)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DataError(f"synthetic: {name} must be a positive integer, got {value!r}")
    return value


@register_dataset("synthetic")
class SyntheticSource(DatasetSource):
    info = DatasetInfo("synthetic", 3, 32, 32, 10, (0.0,) * 3, (1.0,) * 3)

    def held_bytes(
        self,
        root: Path | None,
        train_size: int = 10_000,
        test_size: int = 2_000,
        classes: int = 10,
        channels: int = 3,
        image_size: tuple[int, int] | None = None,
        **options: Any,
    ) -> int:
        # Images are drawn per item; held are the labels (int64, and the int64 permutation
        # that shuffles them) and one float32 prototype per class.
        height, width = image_size or (self.info.height, self.info.width)
        if not all(isinstance(n, int) for n in (train_size, test_size, classes, channels)):
            return 0  # loading reports the bad option
        return (
            16 * (max(train_size, 0) + max(test_size, 0)) + 4 * classes * channels * height * width
        )

    def load(
        self,
        root: Path | None,
        *,
        augment: bool,
        download: bool,
        image_size: tuple[int, int] | None,
        train_size: int = 10_000,
        test_size: int = 2_000,
        classes: int = 10,
        channels: int = 3,
        data_seed: int = 0,
        noise: float = 1.0,
        **options: Any,
    ) -> SourceData:
        """`root`, `download` and `augment` are ignored: nothing is on disk, and the noise
        is already the variation (augmenting would only make benchmarks less repeatable).
        `data_seed` fixes the pixels; `build_datasets`' `seed` only moves the val split."""
        if options:
            raise DataError(
                f"synthetic: unknown option(s) {', '.join(sorted(options))}; known: "
                "train_size, test_size, classes, channels, data_seed, noise"
            )
        train_size = _positive_int("train_size", train_size)
        test_size = _positive_int("test_size", test_size)
        classes = _positive_int("classes", classes)
        channels = _positive_int("channels", channels)
        if train_size > 2**31 - 2 or test_size > 2**31 - 2:
            raise DataError("synthetic: train_size/test_size must be below 2**31 - 1")
        if not isinstance(noise, int | float) or noise < 0:
            raise DataError(f"synthetic: noise must be a non-negative number, got {noise!r}")
        height, width = image_size or (self.info.height, self.info.width)
        info = replace(
            self.info,
            channels=channels,
            height=height,
            width=width,
            classes=classes,
            mean=(0.0,) * channels,
            std=(1.0,) * channels,
        )
        protos = make_prototypes(classes, channels, height, width, data_seed)
        train = SyntheticImages(
            protos, train_size, data_seed=data_seed, split=_TRAIN, noise=float(noise)
        )
        test = SyntheticImages(
            protos, test_size, data_seed=data_seed, split=_TEST, noise=float(noise)
        )
        return SourceData(train=train, train_eval=train, test=test, info=info)
