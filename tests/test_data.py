"""Tests for wirelang.data: every loader reads a small fixture written in its real format."""

from __future__ import annotations

import gzip
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from wirelang.data import (
    DataError,
    DatasetInfo,
    DatasetSource,
    SourceData,
    Splits,
    build_datasets,
    dataset_info,
    list_datasets,
    register_dataset,
)
from wirelang.data import registry as registry_module
from wirelang.data.cifar import CifarSource
from wirelang.data.idx import read_idx

FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- fixture writers


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 6, protocol: int = 2) -> dict:
    """cifar-10-batches-py/ with the real file names and dict keys (bytes, as in the originals)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written: dict[str, list] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}

    def batch(path: Path, n: int, offset: int, split: str) -> None:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(offset + i) % 10 for i in range(n)]
        entry = {
            b"batch_label": b"fixture",
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{offset + i}.png".encode() for i in range(n)],
        }
        path.write_bytes(pickle.dumps(entry, protocol=protocol))
        written[f"{split}_x"].append(data.reshape(-1, 3, 32, 32))
        written[f"{split}_y"].extend(labels)

    for i in range(1, 6):
        batch(folder / f"data_batch_{i}", per_batch, (i - 1) * per_batch, "train")
    batch(folder / "test_batch", n_test, 3, "test")
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [b"c%d" % i for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return {
        "train_x": np.concatenate(written["train_x"]),
        "train_y": written["train_y"],
        "test_x": np.concatenate(written["test_x"]),
        "test_y": written["test_y"],
    }


def write_cifar100(root: Path, n_train: int = 12, n_test: int = 5) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        fine[0] = 99  # the top label must be accepted
        entry = {
            b"filenames": [b"x.png"] * n,
            b"batch_label": split.encode(),
            b"fine_labels": fine,
            b"coarse_labels": [v // 5 for v in fine],
            b"data": data,
        }
        (folder / split).write_bytes(pickle.dumps(entry))
        out[split] = (data.reshape(-1, 3, 32, 32), fine)
    meta = {
        b"fine_label_names": [b"f%d" % i for i in range(100)],
        b"coarse_label_names": [b"c%d" % i for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) * 7 % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3 % 10).astype(np.uint8),
    }
    for stem, array in arrays.items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / stem).write_bytes(idx_bytes(array))
    return arrays


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (20, 16)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def write_image_folder(root: Path, classes=("cat", "dog", "eel"), per_class=(3, 2)) -> None:
    colors = {"cat": (255, 0, 0), "dog": (0, 255, 0), "eel": (0, 0, 255)}
    for split, n in zip(("train", "val"), per_class, strict=True):
        for c in classes:
            for i in range(n):
                write_png(root / split / c / f"{c}_{i}.png", colors.get(c, (9, 9, 9)))


def unnormalise(x: torch.Tensor, info: DatasetInfo) -> np.ndarray:
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.int64).numpy()


def all_labels(ds) -> list[int]:
    return [int(ds[i][1]) for i in range(len(ds))]


# ---------------------------------------------------------------- registry


def test_registry_lists_builtin_datasets_and_infos_without_disk():
    names = list_datasets()
    for name in (
        "cifar10",
        "cifar100",
        "imagenet",
        "mnist",
        "fashion_mnist",
        "fashion_mnist_small",
        "synthetic",
    ):
        assert name in names
    assert dataset_info("cifar100") == DatasetInfo(
        "cifar100", 3, 32, 32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
    )
    assert dataset_info("imagenet").classes == 1000
    assert (dataset_info("mnist").channels, dataset_info("mnist").height) == (1, 28)
    with pytest.raises(DataError, match="unknown dataset 'nope'; known datasets: cifar10"):
        dataset_info("nope")


def test_register_custom_dataset_and_reject_duplicates():
    @register_dataset("tiny_custom")
    class Tiny(DatasetSource):
        info = DatasetInfo("tiny_custom", 1, 2, 2, 2, (0.0,), (1.0,))

        def load(self, root, *, augment, download, image_size, **options) -> SourceData:
            xs = [(torch.full((1, 2, 2), float(i)), i % 2) for i in range(10)]
            return SourceData(train=xs, train_eval=xs, test=xs[:3], info=self.info)

    try:
        assert "tiny_custom" in list_datasets()
        splits = build_datasets("tiny_custom", val_size=3)
        assert isinstance(splits, Splits)
        assert (len(splits.train), len(splits.val), len(splits.test)) == (7, 3, 3)
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("tiny_custom")(Tiny)
    finally:
        registry_module._REGISTRY.pop("tiny_custom", None)


def test_importing_wirelang_data_does_not_import_torchvision():
    code = "import sys, wirelang.data; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- splits


def test_val_split_disjoint_deterministic_and_sized():
    a = build_datasets("synthetic", val_size=0.2, seed=5, train_size=100, test_size=10)
    b = build_datasets("synthetic", val_size=0.2, seed=5, train_size=100, test_size=10)
    c = build_datasets("synthetic", val_size=0.2, seed=6, train_size=100, test_size=10)
    assert (len(a.train), len(a.val)) == (80, 20)
    train_idx, val_idx = set(a.train.indices), set(a.val.indices)
    assert not train_idx & val_idx
    assert train_idx | val_idx == set(range(100))
    assert a.val.indices == b.val.indices and a.train.indices == b.train.indices
    assert a.val.indices != c.val.indices
    # The split is exactly the documented torch.Generator permutation.
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(5))
    assert set(a.val.indices) == set(perm[:20].tolist())

    counted = build_datasets("synthetic", val_size=7, train_size=100, test_size=10)
    assert (len(counted.train), len(counted.val)) == (93, 7)
    none = build_datasets("synthetic", val_size=0, train_size=100, test_size=10)
    assert none.val is None and len(none.train) == 100


def test_train_subset_keeps_first_of_shuffled_remainder():
    s = build_datasets("synthetic", val_size=10, seed=3, train_subset=25, train_size=100)
    perm = torch.randperm(100, generator=torch.Generator().manual_seed(3))
    assert s.train.indices == sorted(perm[10:35].tolist())
    assert len(s.val) == 10
    big = build_datasets("synthetic", val_size=0, train_subset=1000, train_size=50)
    assert len(big.train) == 50


@pytest.mark.parametrize(
    ("val_size", "message"),
    [
        (1.0, "val_size fraction must be in [0, 1), got 1.0"),
        (-1, "leaves no training data"),
        (100, "leaves no training data: synthetic has 100 training items"),
        ("10", "val_size must be a count or a fraction"),
    ],
)
def test_bad_val_size(val_size, message):
    with pytest.raises(DataError, match=re.escape(message)):
        build_datasets("synthetic", val_size=val_size, train_size=100)


def test_val_uses_eval_transforms_while_train_augments(tmp_path):
    write_cifar10(tmp_path, per_batch=6)
    s = build_datasets("cifar10", str(tmp_path), val_size=5, seed=0, augment=True)
    # Validation items are reproducible (no random crop / flip) ...
    torch.manual_seed(0)
    first = [s.val[i][0] for i in range(len(s.val))]
    torch.manual_seed(1)
    second = [s.val[i][0] for i in range(len(s.val))]
    assert all(torch.equal(x, y) for x, y in zip(first, second, strict=True))
    # ... and equal to the un-augmented training item they came from.
    plain = build_datasets("cifar10", str(tmp_path), val_size=0, augment=False)
    for pos, idx in enumerate(s.val.indices):
        assert torch.equal(s.val[pos][0], plain.train[idx][0])
    # Training items are augmented: repeated reads of one item differ.
    torch.manual_seed(0)
    draws = [s.train[0][0] for _ in range(20)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


# ---------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_real_layout(tmp_path, protocol):
    written = write_cifar10(tmp_path, protocol=protocol)
    s = build_datasets("cifar10", str(tmp_path), val_size=0, augment=False)
    assert s.info == dataset_info("cifar10")
    assert (len(s.train), len(s.test)) == (20, 6)
    x, y = s.train[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    assert all_labels(s.train) == written["train_y"]
    assert all_labels(s.test) == written["test_y"]
    # Pixels survive the round trip (channel-major rows -> CHW, then normalisation).
    for i in (0, 7, 19):
        np.testing.assert_array_equal(unnormalise(s.train[i][0], s.info), written["train_x"][i])
    np.testing.assert_array_equal(unnormalise(s.test[5][0], s.info), written["test_x"][5])


def test_cifar10_accepts_the_batch_folder_itself_as_root(tmp_path):
    write_cifar10(tmp_path)
    s = build_datasets("cifar10", str(tmp_path / "cifar-10-batches-py"), val_size=0)
    assert len(s.train) == 20


def test_cifar100_fine_labels(tmp_path):
    written = write_cifar100(tmp_path)
    s = build_datasets("cifar100", str(tmp_path), val_size=0, augment=False)
    assert s.info.classes == 100
    assert all_labels(s.train) == written["train"][1]
    assert all_labels(s.test) == written["test"][1]
    np.testing.assert_array_equal(unnormalise(s.test[2][0], s.info), written["test"][0][2])


def test_cifar_missing_folder_message(tmp_path, monkeypatch):
    def no_network(self, root):
        raise AssertionError("must not download without download=True")

    monkeypatch.setattr(CifarSource, "download", no_network)
    with pytest.raises(DataError) as err:
        build_datasets("cifar10", str(tmp_path))
    folder = tmp_path / "cifar-10-batches-py"
    assert str(err.value) == (
        f"cifar10: dataset not found in {folder} (folder does not exist); looked for "
        "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch. "
        f"Pass --download to fetch it into {tmp_path}, or --data-root DIR pointing to the "
        "folder that contains cifar-10-batches-py/."
    )


def test_cifar_download_only_when_asked(tmp_path, monkeypatch):
    calls = []

    def fake_download(self, root):  # stands in for the network: writes the real layout
        calls.append(root)
        write_cifar10(root)

    monkeypatch.setattr(CifarSource, "download", fake_download)
    s = build_datasets("cifar10", str(tmp_path), download=True, val_size=0)
    assert calls == [tmp_path] and len(s.train) == 20
    build_datasets("cifar10", str(tmp_path), download=True)  # present: no second download
    assert calls == [tmp_path]


def test_cifar_bad_batches_name_the_file(tmp_path):
    write_cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    bad = folder / "data_batch_3"
    bad.write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match=f"{bad}: not a valid CIFAR python batch"):
        build_datasets("cifar10", str(tmp_path))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load global builtins.print"):
        build_datasets("cifar10", str(tmp_path))

    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(DataError, match=f"{bad}: CIFAR 'data' must be uint8 N x 3072"):
        build_datasets("cifar10", str(tmp_path))

    data = np.zeros((2, 3072), np.uint8)
    bad.write_bytes(pickle.dumps({b"data": data, b"labels": [0]}))
    with pytest.raises(DataError, match=f"{bad}: 1 labels for 2 images"):
        build_datasets("cifar10", str(tmp_path))

    bad.write_bytes(pickle.dumps({b"data": data, b"labels": [0, 10]}))
    with pytest.raises(DataError) as err:
        build_datasets("cifar10", str(tmp_path))
    assert str(err.value) == f"{bad}: label 10 out of range 0..9"


# ---------------------------------------------------------------- IDX (MNIST / Fashion-MNIST)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path, gz):
    arrays = write_idx_dataset(tmp_path, gz=gz)
    s = build_datasets("mnist", str(tmp_path), val_size=0, augment=False)
    assert (len(s.train), len(s.test)) == (30, 10)
    x, y = s.test[4]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert all_labels(s.train) == arrays["train-labels-idx1-ubyte"].tolist()
    assert all_labels(s.test) == arrays["t10k-labels-idx1-ubyte"].tolist()
    np.testing.assert_array_equal(
        unnormalise(s.train[11][0], s.info)[0], arrays["train-images-idx3-ubyte"][11]
    )


def test_mnist_augmentation_does_not_flip(tmp_path):
    arrays = write_idx_dataset(tmp_path)
    s = build_datasets("mnist", str(tmp_path), val_size=0, augment=True)
    assert s.train.crop_padding == 2 and s.train.flip is False
    fashion = build_datasets("fashion_mnist", str(tmp_path), val_size=0, augment=True)
    assert fashion.train.flip is True
    # An augmented item is the original shifted by at most 2 px with zero fill.
    torch.manual_seed(0)
    x = unnormalise(s.train[0][0], s.info)[0]
    original = np.pad(arrays["train-images-idx3-ubyte"][0], 2)
    windows = [original[t : t + 28, le : le + 28] for t in range(5) for le in range(5)]
    assert any(np.array_equal(x, w) for w in windows)


def test_idx_missing_folder_message(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        build_datasets("fashion_mnist", str(missing))
    assert str(err.value) == (
        f"fashion_mnist: dataset not found in {missing} (folder does not exist); looked for "
        "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
        "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]. Install it with "
        "`apt-get install dataset-fashion-mnist` (files go to "
        "/usr/share/datasets/fashion-mnist) or pass --data-root DIR pointing to a folder "
        "with these files."
    )


def test_idx_partial_folder_lists_only_missing_files(tmp_path):
    write_idx_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        DataError,
        match=rf"mnist: dataset not found in {tmp_path}; looked for "
        r"t10k-labels-idx1-ubyte\[\.gz\]\. Put the four",
    ):
        build_datasets("mnist", str(tmp_path))


def test_mnist_without_root_says_how():
    with pytest.raises(DataError, match="mnist: no data folder given; pass --data-root DIR"):
        build_datasets("mnist")


def test_idx_bad_magic_exact_message(tmp_path):
    write_idx_dataset(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[3] = 0x01  # labels' magic in an images file
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError) as err:
        build_datasets("mnist", str(tmp_path))
    assert str(err.value) == (
        f"{path}: bad IDX magic number 0x00000801, expected 0x00000803 "
        "(unsigned bytes, 3 dimensions)"
    )


def test_idx_truncated_and_mismatched_files(tmp_path):
    write_idx_dataset(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    with pytest.raises(
        DataError,
        match=f"{images}: IDX file truncated: header declares shape "
        r"\(30, 28, 28\) \(23520 bytes\) but 23515 bytes of data follow",
    ):
        build_datasets("mnist", str(tmp_path))

    (tmp_path / "train-images-idx3-ubyte").unlink()
    gz = tmp_path / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(idx_bytes(np.zeros((30, 28, 28), np.uint8)))[:-10])
    with pytest.raises(DataError, match=f"{gz}: corrupt or truncated gzip file"):
        build_datasets("mnist", str(tmp_path))

    gz.write_bytes(gzip.compress(idx_bytes(np.zeros((29, 28, 28), np.uint8))))
    labels = tmp_path / "train-labels-idx1-ubyte"
    with pytest.raises(DataError, match=f"{labels}: 30 labels but {gz} has 29 images"):
        build_datasets("mnist", str(tmp_path))


def test_idx_labels_out_of_range(tmp_path):
    write_idx_dataset(tmp_path, gz=False)
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    values = np.zeros(10, np.uint8)
    values[4] = 10
    labels.write_bytes(idx_bytes(values))
    with pytest.raises(DataError) as err:
        build_datasets("mnist", str(tmp_path))
    assert str(err.value) == f"{labels}: label 10 out of range 0..9"


def test_read_idx_roundtrip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(array))
    out = read_idx(path, 3)
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


@pytest.mark.skipif(not FMNIST_DEBIAN.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_default_root_is_the_debian_package():
    s = build_datasets("fashion_mnist", val_size=5000, augment=False)
    assert (len(s.train), len(s.val), len(s.test)) == (55000, 5000, 10000)
    x, y = s.test[0]
    assert x.shape == (1, 28, 28) and y == 9  # the first test image is an ankle boot


# ---------------------------------------------------------------- ImageFolder (ImageNet)


def test_imagenet_image_folder(tmp_path):
    write_image_folder(tmp_path)
    s = build_datasets("imagenet", str(tmp_path), val_size=0, image_size=(24, 24))
    assert s.info.classes == 3 and (s.info.height, s.info.width) == (24, 24)
    assert (len(s.train), len(s.test)) == (9, 6)
    assert all_labels(s.train) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all_labels(s.test) == [0, 0, 1, 1, 2, 2]
    x, y = s.test[2]  # a green "dog": the centre crop is pure green after un-normalising
    assert x.shape == (3, 24, 24) and x.dtype == torch.float32 and y == 1
    rgb = unnormalise(x, s.info)
    assert (rgb[1] == 255).all() and (rgb[0] == 0).all() and (rgb[2] == 0).all()
    split = build_datasets("imagenet", str(tmp_path), val_size=3, image_size=(24, 24))
    assert len(split.train) == 6 and split.val[0][0].shape == (3, 24, 24)
    batch_x, batch_y = next(iter(DataLoader(split.train, batch_size=4)))
    assert batch_x.shape == (4, 3, 24, 24) and batch_y.dtype == torch.int64


def test_imagenet_missing_and_malformed_folders(tmp_path):
    with pytest.raises(DataError) as err:
        build_datasets("imagenet", str(tmp_path / "in1k"))
    assert str(err.value).startswith(
        f"imagenet: dataset not found in {tmp_path / 'in1k'} (folder does not exist); looked "
        "for train/<class>/<images>, val/<class>/<images>. Pass --data-root DIR"
    )

    (tmp_path / "flat" / "train").mkdir(parents=True)
    (tmp_path / "flat" / "val").mkdir()
    write_png(tmp_path / "flat" / "train" / "loose.png", (1, 2, 3))
    with pytest.raises(
        DataError,
        match=f"{tmp_path / 'flat' / 'train'}: not a usable ImageFolder .*one sub-folder per class",
    ):
        build_datasets("imagenet", str(tmp_path / "flat"))

    write_image_folder(tmp_path / "odd")
    write_png(tmp_path / "odd" / "val" / "fox" / "f.png", (5, 5, 5))
    with pytest.raises(DataError, match="class folders differ .*only in val: \\['fox'\\]"):
        build_datasets("imagenet", str(tmp_path / "odd"))


def test_imagenet_unreadable_image_names_file(tmp_path):
    write_image_folder(tmp_path)
    broken = tmp_path / "val" / "cat" / "cat_0.png"
    broken.write_bytes(b"not a png")
    s = build_datasets("imagenet", str(tmp_path), val_size=0, image_size=(8, 8))
    with pytest.raises(DataError, match=f"{broken}: cannot read image"):
        s.test[0]


# ---------------------------------------------------------------- shipped subset


def test_fashion_mnist_small_is_real_and_balanced():
    s = build_datasets("fashion_mnist_small", val_size=0, augment=False)
    assert len(s.train) >= 10_000 and len(s.test) == 2_000
    assert s.info.classes == 10 and (s.info.channels, s.info.height, s.info.width) == (1, 28, 28)
    train_labels = s.train.labels
    assert torch.bincount(train_labels).tolist() == [1200] * 10
    assert set(s.test.labels.tolist()) == set(range(10))
    pixels = s.train.images.to(torch.float64) / 255
    # Real Fashion-MNIST statistics: mostly black background, mean ~0.286, std ~0.353,
    # and the info's normalisation constants describe this data.
    assert abs(pixels.mean().item() - 0.286) < 0.01 and abs(pixels.std().item() - 0.353) < 0.01
    assert (pixels == 0).double().mean().item() > 0.4
    assert abs(pixels.mean().item() - s.info.mean[0]) < 1e-3
    x, y = s.test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 9


def test_fashion_mnist_small_split_and_resize():
    s = build_datasets("fashion_mnist_small", val_size=0.1, image_size=(32, 32))
    assert (len(s.train), len(s.val)) == (10_800, 1_200)
    assert s.info.height == 32 and s.val[0][0].shape == (1, 32, 32)


def test_shipped_licence_notice():
    text = Path(__file__).parents[1] / "wirelang/data/assets/LICENSE-fashion-mnist.txt"
    content = text.read_text()
    assert "Copyright (c) 2017 Zalando SE" in content and "MIT" in content


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_shaped():
    a = build_datasets("synthetic", val_size=0, train_size=64, test_size=16)
    b = build_datasets("synthetic", val_size=0, train_size=64, test_size=16)
    assert a.info == dataset_info("synthetic")
    x, y = a.train[5]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= y < 10
    assert torch.equal(x, b.train[5][0]) and y == b.train[5][1]
    assert not torch.equal(a.train[5][0], a.test[5][0])
    other = build_datasets("synthetic", val_size=0, train_size=64, data_seed=1)
    assert not torch.equal(x, other.train[5][0])
    custom = build_datasets(
        "synthetic", val_size=0, image_size=(8, 12), channels=1, classes=4, train_size=40
    )
    assert custom.info.classes == 4 and custom.train[0][0].shape == (1, 8, 12)
    assert torch.bincount(custom.train.labels).tolist() == [10] * 4
    with pytest.raises(DataError, match="synthetic: unknown option\\(s\\) trian_size"):
        build_datasets("synthetic", trian_size=3)


def test_synthetic_labels_are_learnable():
    s = build_datasets("synthetic", val_size=0, train_size=500, test_size=200)
    loader = DataLoader(s.train, batch_size=500)
    xs, ys = next(iter(loader))
    means = torch.stack([xs[ys == c].mean(0) for c in range(10)]).flatten(1)
    tx, ty = next(iter(DataLoader(s.test, batch_size=200)))
    pred = torch.cdist(tx.flatten(1), means).argmin(1)
    assert (pred == ty).float().mean().item() > 0.9
    assert abs(xs.mean().item()) < 0.1 and abs(xs.std().item() - 1) < 0.1
