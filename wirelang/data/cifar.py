"""CIFAR-10 / CIFAR-100 from the official "python version" pickles.

The on-disk layout is the one torchvision's CIFAR10/CIFAR100 use (`cifar-10-batches-py/`,
`cifar-100-python/`), and downloading goes through torchvision (its URL and archive md5).
Reading is done here instead of through torchvision's classes because those verify every
file's md5 on each load and report any problem as a generic RuntimeError; we want each
broken file named in a DataError, and we want to refuse pickles that try to run code.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

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

PIXELS = 3 * 32 * 32

# The only globals a CIFAR batch (a dict of lists, strings and one numpy array) needs.
# Anything else in a file is either corruption or an attempt to execute code on load.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
}
_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if _NUMPY_2 and module.startswith("numpy.core."):
            # The original files name numpy.core, which NumPy 2 still resolves but with a
            # DeprecationWarning on every load; numpy._core is the same module.
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def _unpickle(f: BinaryIO) -> Any:
    # latin1 is what the Python 2 pickles of CIFAR need for their numpy payloads.
    return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def read_cifar_batch(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 N x 3 x 32 x 32, int64 N), with every format check applied."""
    try:
        with path.open("rb") as f:
            entry = _unpickle(f)
    except OSError as exc:
        raise DataError(f"{path}: cannot read CIFAR batch ({exc.strerror or exc})") from None
    except Exception as exc:  # unpickling garbage can raise almost any exception type
        raise DataError(
            f"{path}: not a valid CIFAR python batch ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(entry, dict):
        raise DataError(f"{path}: not a valid CIFAR python batch (expected a dict)")
    # Files written by Python 2 (the originals) have str keys once loaded with latin1,
    # files written by Python 3 tools usually have bytes keys; accept both.
    entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data = entry.get("data")
    if data is None or label_key not in entry:
        raise DataError(f"{path}: CIFAR batch lacks the 'data' or '{label_key}' entry")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise DataError(
            f"{path}: CIFAR 'data' must be uint8 N x {PIXELS}, got {data.dtype} {data.shape}"
        )
    try:
        labels = np.asarray(entry[label_key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: CIFAR '{label_key}' is not a list of integers") from None
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    check_labels(torch.from_numpy(labels), classes, str(path))
    # Rows are stored channel-major (1024 red, 1024 green, 1024 blue), so this is CHW.
    return data.reshape(-1, 3, 32, 32), labels


class CifarSource(DatasetSource):
    folder: ClassVar[str]
    train_files: ClassVar[tuple[str, ...]]
    test_files: ClassVar[tuple[str, ...]]
    label_key: ClassVar[str]
    torchvision_class: ClassVar[str]
    # Somewhere writable to download into when the user gives no --data-root.
    default_root = "~/.cache/wirelang/datasets"

    def held_bytes(self, root: Path | None, **options: Any) -> int:
        # Every CIFAR has 50,000 training and 10,000 test images of 3 x 32 x 32 bytes; the
        # labels become int64. (While loading, the training batches are held twice for a moment:
        # they are concatenated.)
        return 60_000 * (PIXELS + 8)

    def locate(self, root: Path) -> Path:
        """The batch folder: `root/<folder>`, or `root` itself if the files are right there."""
        nested = root / self.folder
        if not nested.is_dir() and all((root / f).is_file() for f in self.train_files):
            return root
        return nested

    def missing(self, folder: Path) -> list[str]:
        return [f for f in self.train_files + self.test_files if not (folder / f).is_file()]

    def download(self, root: Path) -> None:
        # Lazy: importing torchvision is slow and only downloading needs it.
        from torchvision import datasets
        from torchvision.datasets.utils import download_and_extract_archive

        cls = getattr(datasets, self.torchvision_class)
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Verifies the archive's md5 before extracting, so a bad download is caught.
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        except (OSError, RuntimeError) as exc:
            raise DataError(
                f"{self.info.name}: download of {cls.url} into {root} failed: {exc}. "
                f"Download and unpack it by hand, then pass --data-root DIR."
            ) from None

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
        if root is None:  # only when called directly: build_datasets applies default_root
            root = Path(self.default_root or ".").expanduser()
        folder = self.locate(root)
        if self.missing(folder) and download:
            self.download(root)
            folder = self.locate(root)
        missing = self.missing(folder)
        if missing:
            how = (
                f"Pass --download to fetch it into {root}, or --data-root DIR pointing to "
                f"the folder that contains {self.folder}/."
            )
            raise DataError(missing_message(name, folder, missing, how))
        train = [
            read_cifar_batch(folder / f, self.label_key, self.info.classes)
            for f in self.train_files
        ]
        test = [
            read_cifar_batch(folder / f, self.label_key, self.info.classes) for f in self.test_files
        ]
        train_x = torch.from_numpy(np.concatenate([x for x, _ in train]))
        train_y = torch.from_numpy(np.concatenate([y for _, y in train]))
        test_x = torch.from_numpy(np.concatenate([x for x, _ in test]))
        test_y = torch.from_numpy(np.concatenate([y for _, y in test]))
        # Standard CIFAR augmentation: 4-pixel-padded random 32x32 crop plus mirror.
        return array_source_data(
            self.info,
            train_x,
            train_y,
            test_x,
            test_y,
            augment=augment,
            crop_padding=4,
            flip=True,
            image_size=image_size,
        )


@register_dataset("cifar10")
class Cifar10Source(CifarSource):
    info = DatasetInfo("cifar10", 3, 32, 32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    folder = "cifar-10-batches-py"
    train_files = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_files = ("test_batch",)
    label_key = "labels"
    torchvision_class = "CIFAR10"


@register_dataset("cifar100")
class Cifar100Source(CifarSource):
    info = DatasetInfo(
        "cifar100", 3, 32, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    )
    folder = "cifar-100-python"
    train_files = ("train",)
    test_files = ("test",)
    label_key = "fine_labels"  # the 100-way labels; "coarse_labels" are the 20 superclasses
    torchvision_class = "CIFAR100"
