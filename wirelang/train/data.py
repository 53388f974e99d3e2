"""Data for a run: the three splits, and loaders whose order is a function of (seed, epoch).

Training batches are global: step i of epoch e uses items perm(seed, e)[i*B : (i+1)*B], and
rank r of W takes the r-th slice of b = B/W of them. The batches a run sees therefore do not
depend on the number of processes (one process with B equals W processes with B/W each, up
to floating-point summation order), and a run resumed at an epoch boundary sees exactly the
batches it would have seen. Evaluation splits each set into W contiguous shards and sums.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from wirelang.data import DataError, Splits, build_datasets
from wirelang.ir import core
from wirelang.runs.layout import RunError
from wirelang.train.distributed import Dist
from wirelang.train_config import TrainConfig


def load_splits(config: TrainConfig, net: core.Network, download: bool) -> Splits:
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


class GlobalBatchSampler(DistributedSampler):
    """A DistributedSampler whose shards are slices of each global batch (see the module doc).

    `set_epoch(e)` must be called before each epoch, as for any DistributedSampler; the
    permutation is drawn from a generator seeded with seed + e, never from global state.
    """

    def __init__(self, dataset: Dataset, global_batch: int, d: Dist, seed: int):
        super().__init__(
            dataset, num_replicas=d.world_size, rank=d.rank, shuffle=True, seed=seed, drop_last=True
        )
        self.global_batch = global_batch
        self.per_rank = global_batch // d.world_size
        self.steps = len(dataset) // global_batch  # the last partial global batch is dropped
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
    ds: Dataset, config: TrainConfig, d: Dist
) -> tuple[DataLoader, GlobalBatchSampler]:
    if len(ds) < config.batch:
        raise RunError(f"batch {config.batch} is larger than the training set ({len(ds)} items)", 2)
    sampler = GlobalBatchSampler(ds, config.batch, d, config.seed)
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
    )
    return loader, sampler


def eval_loader(ds: Dataset | None, config: TrainConfig, d: Dist) -> DataLoader | None:
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
