"""Datasets for training compiled wirings: a registry of named sources plus split logic.

Importing this package registers the built-in datasets (cifar10, cifar100, imagenet, mnist,
fashion_mnist, fashion_mnist_small, synthetic); torchvision is only imported when a dataset
that needs it is actually built.
"""

from . import cifar, folder, idx, small, synthetic  # noqa: F401  (register the sources)
from .registry import (
    ArrayDataset,
    DataError,
    DatasetInfo,
    DatasetSource,
    SourceData,
    Splits,
    build_datasets,
    dataset_bytes,
    dataset_classes,
    dataset_info,
    list_datasets,
    register_dataset,
)

__all__ = [
    "ArrayDataset",
    "DataError",
    "DatasetInfo",
    "DatasetSource",
    "SourceData",
    "Splits",
    "build_datasets",
    "dataset_bytes",
    "dataset_classes",
    "dataset_info",
    "list_datasets",
    "register_dataset",
]
