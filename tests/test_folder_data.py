"""`data folder`: your own images, any class count, any size, grey or colour."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from wirelang.cli.commands import app
from wirelang.data import build_datasets
from wirelang.data.registry import DataError
from wirelang.runs.layout import read_metrics

SPEC = textwrap.dedent("""\
    network mine {{
      input image(3, 12, 12)
      classes {classes}
      stem {{
        conv(4, k=3, stride=2)
      }}
      graph g {{
        nodes a[4] input op(instancenorm, relu, dwconv(k=3))
        nodes h[6] op(instancenorm, relu, dwconv(k=3))
        nodes o[5] output
        edges forward(a, h, o)
        budget 20
      }}
      head {{
        avgpool, linear(classes)
      }}
      train {{
        data folder(val=0.25)
        batch 4
        epochs 1
        optimizer sgd(lr=0.05)
        seed 3
      }}
    }}
    """)


def make_folder(root: Path, classes=("ant", "bee"), per_class: int = 8) -> Path:
    """A flat DIR/<class>/<image> folder: mixed sizes, some grey, PNG and JPEG."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (10 + 7 * i, 14 + 3 * c)
            mode = "L" if i % 3 == 0 else "RGB"
            color = (40 * c + 5 * i) % 256 if mode == "L" else (200 * c, 10 * i, 90)
            ext = "png" if i % 2 else "jpg"
            Image.new(mode, size, color).save(root / name / f"{i}.{ext}")
    return root


def test_flat_folder_splits_converts_and_sizes(tmp_path):
    root = make_folder(tmp_path / "imgs")
    s = build_datasets("folder", root, val_size=0.25, channels=3, classes=2, image_size=(12, 12))
    assert s.test is None and len(s.train) == 12 and len(s.val) == 4
    x, y = s.train[0]
    assert tuple(x.shape) == (3, 12, 12) and y in (0, 1)
    grey = build_datasets("folder", root, val_size=0, channels=1, classes=2, image_size=(9, 7))
    assert tuple(grey.train[3][0].shape) == (1, 9, 7)
    assert grey.info.classes == 2 and len(grey.info.mean) == 1


def test_class_count_must_match(tmp_path):
    root = make_folder(tmp_path / "imgs", classes=("a", "b", "c"))
    with pytest.raises(
        DataError, match=r"has 3 class folders \(a, b, c\) but the network declares `classes 2`"
    ):
        build_datasets("folder", root, val_size=0, channels=3, classes=2, image_size=(12, 12))


def test_train_eval_after_moving_and_resume_from_the_cli(tmp_path):
    root = make_folder(tmp_path / "imgs")
    spec = tmp_path / "mine.wire"
    spec.write_text(SPEC.format(classes=2))
    run = tmp_path / "R"
    r = CliRunner().invoke(app, ["train", str(spec), "--out", str(run), "--data-root", str(root)])
    assert r.exit_code == 0, r.output
    assert "done: test top1 n/a" in r.output
    assert [row["epoch"] for row in read_metrics(run)] == [1]
    moved = tmp_path / "moved"
    shutil.move(root, moved)
    r = CliRunner().invoke(app, ["eval", str(run), "--data-root", str(moved), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["items"] == 4
    assert (
        "no test split"
        in CliRunner()
        .invoke(app, ["eval", str(run), "--split", "test", "--data-root", str(moved)])
        .output
    )
    assert "is finished" in CliRunner().invoke(app, ["train", "--resume", str(run)]).output
    again = CliRunner().invoke(app, ["train", "--resume", str(run), "--data-root", str(moved)])
    assert again.exit_code == 0 and "is finished" in again.output
    assert json.loads((run / "config.json").read_text())["train"]["data"]["root"] == str(moved)


def test_a_spec_with_the_wrong_class_count_stops_before_training(tmp_path):
    root = make_folder(tmp_path / "imgs")
    spec = tmp_path / "mine.wire"
    spec.write_text(SPEC.format(classes=5))
    r = CliRunner().invoke(
        app, ["train", str(spec), "--out", str(tmp_path / "R"), "--data-root", str(root)]
    )
    assert r.exit_code == 1
    assert (
        "has 2 class folders (ant, bee) but the network declares `classes 5`; write `classes 2`"
        in r.output
    )
