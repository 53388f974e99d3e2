"""Build wirelang/data/assets/fashion_mnist_small.npz from the full Fashion-MNIST.

The shipped subset lets tests, examples and CI train on real images without any data
installed. It holds a class-balanced random 12,000 of the 60,000 training images (fixed seed,
kept in their original file order) and the first 2,000 test images, as uint8.

Usage: python scripts/make_fmnist_small.py [--source DIR] [--out FILE] [--seed 0]
The source defaults to where `apt-get install dataset-fashion-mnist` puts the files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from wirelang.data.idx import (
    IDX_FILES,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    find_idx_files,
    read_idx,
)

DEFAULT_SOURCE = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "wirelang/data/assets/fashion_mnist_small.npz"


def stratified_indices(labels: np.ndarray, total: int, seed: int) -> np.ndarray:
    """`total` indices with (as near as possible) equal counts per class, sorted."""
    classes = np.unique(labels)
    base, extra = divmod(total, len(classes))
    rng = np.random.default_rng(seed)
    chosen = []
    for i, c in enumerate(classes):
        pool = np.flatnonzero(labels == c)
        want = base + (1 if i < extra else 0)
        if want > len(pool):
            raise SystemExit(f"class {c} has only {len(pool)} images, need {want}")
        chosen.append(rng.choice(pool, size=want, replace=False))
    # Original order keeps the file reproducible and makes it easy to map back.
    return np.sort(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--train", type=int, default=12_000)
    parser.add_argument("--test", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    found, missing = find_idx_files(args.source)
    if missing:
        print(
            f"missing in {args.source}: {', '.join(missing)} "
            f"(apt-get install dataset-fashion-mnist)",
            file=sys.stderr,
        )
        return 1
    assert set(found) == set(IDX_FILES)
    train_x = read_idx(found[TRAIN_IMAGES], 3)
    train_y = read_idx(found[TRAIN_LABELS], 1)
    test_x = read_idx(found[TEST_IMAGES], 3)
    test_y = read_idx(found[TEST_LABELS], 1)

    idx = stratified_indices(train_y, args.train, args.seed)
    arrays = {
        "train_images": train_x[idx],
        "train_labels": train_y[idx],
        "test_images": test_x[: args.test],
        "test_labels": test_y[: args.test],
        # Provenance: which rows of train-images-idx3-ubyte were taken.
        "train_source_index": idx.astype(np.uint16),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)

    pixels = arrays["train_images"].astype(np.float64) / 255.0
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB)")
    print(f"train {arrays['train_images'].shape}, counts {np.bincount(arrays['train_labels'])}")
    print(f"test {arrays['test_images'].shape}, counts {np.bincount(arrays['test_labels'])}")
    print(f"train pixel mean {pixels.mean():.4f} std {pixels.std():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
