"""IDX reader (the MNIST file format) and the `mnist` / `fashion_mnist` datasets.

The format: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
then one big-endian uint32 per dimension, then the raw data. We read it ourselves rather than
through torchvision so that every way a file can be wrong (gzip damage, wrong magic,
truncation, image/label count mismatch) turns into a DataError naming the file.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from .registry import (
    DataError,
    DatasetInfo,
    DatasetSource,
    SourceData,
    array_source_data,
    check_labels,
    missing_message,
    register_dataset,
    reject_options,
)

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"

# File stems of the standard distribution; each may also exist with a .gz suffix.
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    # Decide by content, not suffix: some mirrors ship gzipped files without ".gz".
    if data[:2] != GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip file ({exc})") from None


def _gzipped(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def read_idx(path: Path | str, ndim: int) -> np.ndarray:
    """Read an unsigned-byte IDX file with `ndim` dimensions (3 for images, 1 for labels)."""
    path = Path(path)
    raw = _read_bytes(path)
    expected_magic = (UBYTE << 8) | ndim
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, no header)")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(
            f"{path}: bad IDX magic number 0x{magic:08X}, expected 0x{expected_magic:08X} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64))
    payload = len(raw) - header
    if payload != size:
        what = "truncated" if payload < size else "has trailing bytes"
        raise DataError(
            f"{path}: IDX file {what}: header declares shape {dims} ({size} bytes) "
            f"but {payload} bytes of data follow"
        )
    # bytearray makes the array writable, which torch.from_numpy wants.
    return np.frombuffer(bytearray(raw[header:]), dtype=np.uint8).reshape(dims)


def find_idx_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each standard stem to an existing file (raw preferred, else .gz); list the missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for stem in IDX_FILES:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            missing.append(f"{stem}[.gz]")
    return found, missing


def load_idx_pair(
    images_path: Path, labels_path: Path, info: DatasetInfo
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 N x 1 x H x W and labels as int64 N, validated against `info`."""
    images = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels but {images_path} has "
            f"{images.shape[0]} images"
        )
    if images.shape[1:] != (info.height, info.width):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {info.height}x{info.width} for {info.name}"
        )
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    check_labels(label_tensor, info.classes, str(labels_path))
    return torch.from_numpy(images).unsqueeze(1), label_tensor


class IdxSource(DatasetSource):
    """A 28x28 greyscale dataset stored as the four standard IDX files in one folder."""

    how_to_get: ClassVar[str]
    flip: ClassVar[bool] = False

    def held_bytes(self, root: Path | None, **options: Any) -> int:
        """uint8 images and int64 labels of both splits, their counts read from the image files'
        headers (magic and count: the first 8 bytes)."""
        if root is None:
            return 0
        found, missing = find_idx_files(root)
        if missing:
            return 0
        items = 0
        for stem in (TRAIN_IMAGES, TEST_IMAGES):
            try:
                with (
                    gzip.open(found[stem])
                    if _gzipped(found[stem])
                    else open(found[stem], "rb") as f
                ):
                    head = f.read(8)
            except (OSError, EOFError, zlib.error):
                return 0  # loading reports the damaged file
            if len(head) == 8:
                items += int.from_bytes(head[4:8], "big")
        return items * (self.info.height * self.info.width + 8)

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
        wanted = [f"{stem}[.gz]" for stem in IDX_FILES]
        if root is None:
            raise DataError(
                f"{name}: no data folder given; pass --data-root DIR pointing to a folder "
                f"with {', '.join(wanted)}. {self.how_to_get}"
            )
        found, missing = find_idx_files(root)
        if missing:
            raise DataError(missing_message(name, root, missing, self.how_to_get))
        train_x, train_y = load_idx_pair(found[TRAIN_IMAGES], found[TRAIN_LABELS], self.info)
        test_x, test_y = load_idx_pair(found[TEST_IMAGES], found[TEST_LABELS], self.info)
        # Padding 2 on 28 px is the usual (Fashion-)MNIST jitter: the digits/garments are
        # centred, so larger shifts would push strokes out of frame.
        return array_source_data(
            self.info,
            train_x,
            train_y,
            test_x,
            test_y,
            augment=augment,
            crop_padding=2,
            flip=self.flip,
            image_size=image_size,
        )


@register_dataset("mnist")
class MnistSource(IdxSource):
    info = DatasetInfo("mnist", 1, 28, 28, 10, (0.1307,), (0.3081,))
    how_to_get = (
        "Put the four MNIST IDX files (gzipped or not) in one folder and pass --data-root DIR."
    )
    # No flip: a mirrored 2 or 5 is not the same digit.
    flip = False


@register_dataset("fashion_mnist")
class FashionMnistSource(IdxSource):
    info = DatasetInfo("fashion_mnist", 1, 28, 28, 10, (0.2860,), (0.3530,))
    default_root = "/usr/share/datasets/fashion-mnist"
    how_to_get = (
        "Install it with `apt-get install dataset-fashion-mnist` (files go to "
        "/usr/share/datasets/fashion-mnist) or pass --data-root DIR pointing to a folder "
        "with these files."
    )
    # Garments are left/right symmetric enough that mirroring is a free augmentation.
    flip = True
