"""Data for a run: the three splits, and loaders whose order is a function of (seed, epoch).

Training batches are global: step i of epoch e uses items perm(seed, e)[i*B : (i+1)*B], and
rank r of W takes the r-th slice of b = B/W of them. The batches a run sees therefore do not
depend on the number of processes (one process with B equals W processes with B/W each, up
to floating-point summation order), and a run resumed at an epoch boundary sees exactly the
batches it would have seen. Evaluation splits each set into W contiguous shards and sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    Subset,
    TensorDataset,
)

from wirelang.data import (
    DataError,
    DatasetInfo,
    Splits,
    build_datasets,
    dataset_bytes,
    dataset_classes,
)
from wirelang.ir import core
from wirelang.runs.layout import RunError
from wirelang.train.distributed import Dist
from wirelang.train_config import TrainConfig


def load_splits(config: TrainConfig, net: core.Network, download: bool) -> Splits:
    d = config.data
    if d.name == "python":
        raise RunError(
            "this run was trained on datasets passed from Python: resume it with "
            "wirelang.train(resume=RUN, train_data=..., val_data=...) and evaluate it with "
            "wirelang.load(RUN) on your own data"
        )
    options, image_size = _source_options(config, net)
    val = int(d.val) if d.val >= 1 else float(d.val)  # a count, or a fraction of the training set
    try:
        return build_datasets(
            d.name,
            d.root,
            val_size=val,
            augment=d.augment,
            download=download,
            seed=config.seed,
            train_subset=d.subset,
            image_size=image_size,
            **options,
        )
    except DataError as err:
        raise RunError(str(err)) from None


def auto_classes(config: TrainConfig) -> int:
    """The count `classes auto` stands for in a run with these settings: the class folders of
    `data folder` (read now), or the fixed count of a dataset that has one."""
    d = config.data
    if d.name == "folder" and d.root is None:
        raise RunError(
            "`classes auto` counts the class folders of the training data, and `data folder` "
            'has no root: pass --data-root DIR or write `data folder(root="DIR")`',
            2,
        )
    if d.name == "synthetic":  # e.g. `--set data=synthetic` over a folder spec
        # (datasets passed from Python count their own classes: GivenData.class_count)
        raise RunError(
            "`classes auto` counts the class folders of `data folder`, not `synthetic` data: "
            "write `classes N` in the spec",
            2,
        )
    try:
        count = dataset_classes(d.name, d.root)
    except DataError as err:
        raise RunError(str(err)) from None
    if count < 1:  # a source registered without a count of its own
        raise RunError(f"`{d.name}` does not say how many classes it has: write `classes N`", 2)
    return count


def held_bytes(config: TrainConfig, net: core.Network) -> int:
    """Bytes the run's dataset will hold in memory once loaded, before it is (0 for datasets
    passed from Python, which are in memory already, and for sources read on demand)."""
    if config.data.name == "python":
        return 0
    options, image_size = _source_options(config, net)
    try:
        return dataset_bytes(config.data.name, config.data.root, image_size, **options)
    except DataError:
        return 0  # loading reports it


def _source_options(config: TrainConfig, net: core.Network) -> tuple[dict, Any]:
    """The source's options and the image size a run loads its dataset with."""
    d = config.data
    options: dict = {}
    image_size = None
    if d.name == "synthetic":
        # shaped after the network, so any spec can be smoke-tested; a quarter as many test images
        options = {
            "train_size": d.size,
            "test_size": max(10, d.size // 4),
            "classes": net.classes,
            "channels": net.input.channels,
            "data_seed": config.seed,
        }
        image_size = (net.input.height, net.input.width)
    elif d.name == "imagenet":
        image_size = (net.input.height, net.input.width)
    elif d.name == "folder":  # your own images, shaped and counted by the network
        image_size = (net.input.height, net.input.width)
        options = {"channels": net.input.channels, "classes": net.classes}
    return options, image_size


class GlobalBatchSampler(DistributedSampler):
    """A DistributedSampler whose shards are slices of each global batch (see the module doc).

    `set_epoch(e)` must be called before each epoch, as for any DistributedSampler; the
    permutation is drawn from a generator seeded with seed + e, never from global state.
    """

    def __init__(self, dataset: Dataset, global_batch: int, d: Dist, seed: int, group: int = 1):
        super().__init__(
            dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=seed, drop_last=True
        )
        self.global_batch = global_batch
        self.per_rank = global_batch // d.world_size
        # the last partial global batch is dropped, and with gradient accumulation the batches
        # that do not fill a last group of `group` (one optimizer step)
        self.steps = len(dataset) // global_batch // group * group
        self.num_samples = self.steps * self.per_rank
        self.start = 0  # the first step of this epoch to yield (a run resumed inside an epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g)[: self.steps * self.global_batch]
        # (steps, ranks, per_rank): this rank's slice of every global batch, in step order
        mine = order.view(self.steps, self.num_replicas, self.per_rank)[
            self.start :, self.rank
        ].reshape(-1)
        return iter(mine.tolist())

    def __len__(self) -> int:
        return (self.steps - self.start) * self.per_rank


def train_loader(
    ds: Dataset, config: TrainConfig, d: Dist, collate_fn=None
) -> tuple[DataLoader, GlobalBatchSampler]:
    check_train_size(len(ds), config)
    sampler = GlobalBatchSampler(ds, config.batch, d, config.seed, config.accumulate)
    loader = DataLoader(
        ds,
        batch_size=sampler.per_rank,
        sampler=sampler,
        drop_last=True,
        num_workers=config.data.workers,
        pin_memory=d.device.type == "cuda",
        # workers seed themselves from this generator: reseeded every epoch
        generator=torch.Generator(),
        persistent_workers=False,
        collate_fn=collate_fn,
    )
    return loader, sampler


def check_train_size(items: int, config: TrainConfig) -> None:
    """At least one optimizer step per epoch: `batch` x `accumulate` training items."""
    need = config.batch * config.accumulate
    if items < need:
        what = f"batch {config.batch}" + (
            f" x accumulate {config.accumulate}" if config.accumulate > 1 else ""
        )
        raise RunError(f"{what} is larger than the training set ({items} items)", 2)


def eval_loader(
    ds: Dataset | None, config: TrainConfig, d: Dist, collate_fn=None
) -> DataLoader | None:
    """This rank's contiguous shard of `ds` (no padding, so every item counts exactly once)."""
    if ds is None:
        return None
    n = len(ds)
    shard = Subset(ds, range(d.rank * n // d.world_size, (d.rank + 1) * n // d.world_size))
    batch = config.eval_batch or max(1, config.batch // d.world_size)
    return DataLoader(
        shard,
        batch_size=batch,
        shuffle=False,
        num_workers=config.data.workers,
        pin_memory=d.device.type == "cuda",
        collate_fn=collate_fn,
    )


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of everything random during one epoch on one rank (augmentation, dropout)."""
    return (seed * 1_000_003 + epoch * 1_009 + rank) % (2**63 - 1)


def seed_epoch(
    loader: DataLoader, sampler: GlobalBatchSampler, seed: int, epoch: int, rank: int
) -> None:
    """Make this epoch's randomness a function of (seed, epoch, rank) alone: exact resume."""
    s = epoch_seed(seed, epoch, rank)
    sampler.set_epoch(epoch)
    torch.manual_seed(s)  # augmentation in the main process, targeted_dropout, ...
    loader.generator.manual_seed(s)  # the base seed of the loader's worker processes


# ---------------------------------------------------------------------------- your own data
@dataclass
class GivenData:
    """Datasets passed to `wirelang.train` from Python instead of a `data` setting.

    Each split is a map-style `Dataset` of (image tensor (C, H, W), int label), or a
    `DataLoader`, of which the dataset, batch size, worker count and collate function are used:
    the order of the training items is still drawn by wirelang from (seed, epoch), so that a
    resumed or multi-process run sees the batches an uninterrupted one would.
    """

    train: Dataset
    val: Dataset | None = None
    test: Dataset | None = None
    batch: int | None = None  # a DataLoader's batch size
    workers: int = 0
    collate_fn: Any = None

    @classmethod
    def of(cls, train: Any, val: Any = None, test: Any = None) -> GivenData:
        if train is None:
            raise RunError("train_data is required (a Dataset or DataLoader)", 2)
        given = cls(train=_dataset("train_data", train))
        given.val = None if val is None else _dataset("val_data", val)
        given.test = None if test is None else _dataset("test_data", test)
        if isinstance(train, DataLoader):
            given.batch, given.workers = train.batch_size, train.num_workers
            given.collate_fn = train.collate_fn
        return given

    def check(self, net: core.Network) -> None:
        """Each split's first image has the network's input shape; its labels (all of them when
        the dataset exposes them: TensorDataset, `targets`) lie in 0 .. classes-1."""
        for name, ds in (
            ("train_data", self.train),
            ("val_data", self.val),
            ("test_data", self.test),
        ):
            if ds is not None:
                _check_split(name, ds, net)

    def class_count(self) -> int:
        """The count `classes auto` stands for with these datasets: the training dataset's
        `classes` list (torchvision's ImageFolder, CIFAR10, ...), else one more than the largest
        label of the splits that hold their labels in memory (`targets`, TensorDataset)."""
        base = self.train.dataset if isinstance(self.train, Subset) else self.train
        names = getattr(base, "classes", None)
        if isinstance(names, list | tuple) and names:
            return len(names)
        largest = None
        for ds in (self.train, self.val, self.test):
            if ds is None or len(ds) == 0:
                continue
            labels = _labels(ds, None) if _labels_in_memory(ds) else None
            if labels is None or labels.is_floating_point() or labels.numel() == 0:
                continue
            top = int(labels.max())
            largest = top if largest is None else max(largest, top)
        if largest is None or largest < 0:
            raise RunError(
                "`classes auto` with datasets passed from Python takes the count from the "
                "training dataset's `classes` list or from labels held in memory (`targets`, "
                "TensorDataset), and these datasets have neither: write `classes N` in the spec",
                2,
            )
        return largest + 1

    def splits(self) -> Splits:
        info = DatasetInfo("python", 0, 0, 0, 0, (), ())
        return Splits(train=self.train, val=self.val, test=self.test, info=info)

    def describe(self) -> dict[str, Any]:
        """What config.json records of the data (a resumed run is checked against it)."""
        return {
            name: None if ds is None else {"type": type(ds).__name__, "items": len(ds)}
            for name, ds in (("train", self.train), ("val", self.val), ("test", self.test))
        }


def _dataset(name: str, data: Any) -> Dataset:
    ds = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(ds, IterableDataset) or not hasattr(ds, "__getitem__"):
        raise RunError(
            f"{name}: a map-style Dataset (with __len__ and __getitem__) is needed; an "
            "IterableDataset has no order wirelang can draw, resume or split over processes",
            2,
        )
    try:
        len(ds)
    except TypeError:
        raise RunError(f"{name}: the dataset has no length", 2) from None
    return ds


def _check_split(name: str, ds: Dataset, net: core.Network) -> None:
    if len(ds) == 0:
        raise RunError(f"{name} is empty", 2)
    try:
        item = ds[0]
    except Exception as err:
        raise RunError(f"{name}[0] cannot be read: {type(err).__name__}: {err}", 2) from None
    if not isinstance(item, tuple | list) or len(item) != 2:
        raise RunError(
            f"{name}[0] must be (image tensor, int label), found {type(item).__name__}", 2
        )
    x, y = item
    want = (net.input.channels, net.input.height, net.input.width)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise RunError(
            f"{name}[0]: the image must be a float tensor of shape {want} "
            f"(e.g. torchvision.transforms.ToTensor()), found {type(x).__name__}"
            + (f" of {x.dtype}" if isinstance(x, torch.Tensor) else ""),
            2,
        )
    if tuple(x.shape) != want:
        shape = "x".join(map(str, x.shape))
        raise RunError(
            f"{name}: images are {shape} but the network's input is {net.input} "
            f"({'x'.join(map(str, want))})",
            2,
        )
    labels = _labels(ds, y)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise RunError(f"{name}: labels must be integers, found {labels.dtype}", 2)
    bad = labels[(labels < 0) | (labels >= net.classes)]
    if len(bad):
        raise RunError(
            f"{name}: labels must be 0 to {net.classes - 1} (the network declares "
            f"`classes {net.classes}`), found {int(bad[0])}",
            2,
        )


def _labels_in_memory(ds: Dataset) -> bool:
    base = ds.dataset if isinstance(ds, Subset) else ds
    return isinstance(base, TensorDataset) or isinstance(
        getattr(base, "targets", None), list | torch.Tensor
    )


def _labels(ds: Dataset, first: Any) -> torch.Tensor:
    """Every label when the dataset holds them in memory, else the first item's."""
    base, index = ds, None
    if isinstance(ds, Subset):
        base, index = ds.dataset, torch.as_tensor(ds.indices)
    if isinstance(base, TensorDataset):
        labels = base.tensors[-1]
    elif isinstance(getattr(base, "targets", None), list | torch.Tensor):
        labels = torch.as_tensor(base.targets)
    else:
        return torch.as_tensor(first).reshape(-1)
    return (labels if index is None else labels[index]).reshape(-1)
