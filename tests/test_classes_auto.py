"""`classes auto`: the class count of `data folder` read from its class folders when training,
a fixed dataset's own count, and a located error where the count cannot be known."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_folder_data import SPEC, make_folder
from typer.testing import CliRunner

from wirelang.cli.commands import app
from wirelang.frontend import ClassesFromData, build, check_file
from wirelang.ir.meaning import spec_hash
from wirelang.runs.layout import SPEC as RUN_SPEC
from wirelang.runs.layout import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def auto_spec(tmp_path: Path, data: str = "folder(val=0.25)", epochs: int = 1) -> Path:
    spec = tmp_path / "auto.wire"
    text = SPEC.format(classes="auto").replace("data folder(val=0.25)", f"data {data}")
    spec.write_text(text.replace("epochs 1", f"epochs {epochs}"))
    return spec


def test_a_folder_run_counts_its_classes_records_them_and_resumes(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "imgs", classes=("ant", "bee"))
    spec = auto_spec(tmp_path, epochs=2)
    run = tmp_path / "R"

    # Stop the run after its first epoch (12 images, batch 4: 3 steps, then the epoch's sums).
    import wirelang.train.loop as loop

    real, calls = loop.all_sum, {"n": 0}

    def stop_in_epoch_two(d, values):
        calls["n"] += 1
        if calls["n"] == 3 + 1 + 1:
            raise KeyboardInterrupt
        return real(d, values)

    monkeypatch.setattr(loop, "all_sum", stop_in_epoch_two)
    r = CliRunner().invoke(app, ["train", str(spec), "--out", str(run), "--data-root", str(root)])
    assert r.exit_code == 130, r.output
    assert "classes auto: 2 (the class folders of the training data)" in r.output
    monkeypatch.setattr(loop, "all_sum", real)
    assert [row["epoch"] for row in read_metrics(run)] == [1]

    # The run's own spec holds the count: it rebuilds the same network without any data.
    assert "  classes 2\n" in (run / RUN_SPEC).read_text()
    net = build(run / RUN_SPEC)
    assert net.classes == 2 and net.items[-1].out_shape.channels == 2
    saved = json.loads((run / "config.json").read_text())
    assert saved["spec_hash"] == spec_hash(net) == spec_hash(build(spec, classes=2))

    r = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert r.exit_code == 0, r.output
    assert [row["epoch"] for row in read_metrics(run)] == [1, 2]

    moved = tmp_path / "moved"
    shutil.move(root, moved)
    r = CliRunner().invoke(app, ["eval", str(run), "--data-root", str(moved), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["items"] == 4
    # Resuming with the `classes auto` spec itself needs no data either: the run says 2.
    r = CliRunner().invoke(app, ["train", str(spec), "--resume", str(run)])
    assert r.exit_code == 0 and "is finished" in r.output, r.output
    r = CliRunner().invoke(app, ["inspect", str(run), "--json"])
    assert r.exit_code == 0, r.output


def test_three_class_folders_make_a_three_way_head(tmp_path):
    root = make_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=4)
    spec = auto_spec(tmp_path)
    r = CliRunner().invoke(
        app, ["train", str(spec), "--out", str(tmp_path / "R"), "--data-root", str(root)]
    )
    assert r.exit_code == 0, r.output
    assert build(tmp_path / "R" / RUN_SPEC).classes == 3


def test_check_accepts_auto_with_a_note_and_never_imports_torch(tmp_path):
    spec = auto_spec(tmp_path)
    [note] = check_file(spec)
    assert (note.severity, note.span.line, note.span.col) == ("note", 3, 11)
    assert note.message == (
        "`classes auto`: the class count is the number of class folders of the training data, "
        "counted when training starts (checked here with 2 classes)"
    )
    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: sys.stderr.write('LOADED ' + ' '.join(m for m in ('torch', "
        "'typer') if m in sys.modules) + '\\n'))\n"
        f"sys.argv = ['wirelang', 'check', {str(spec)!r}]\n"
        "from wirelang.cli import main\n"
        "main()\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{spec}: ok\n"
    assert "error" not in r.stderr and ": note: `classes auto`" in r.stderr
    assert r.stderr.rstrip().splitlines()[-1] == "LOADED", r.stderr


def test_a_dataset_with_a_fixed_count_resolves_auto(tmp_path):
    spec = tmp_path / "auto.wire"
    spec.write_text(
        SPEC.format(classes="auto")
        .replace("image(3, 12, 12)", "image(1, 28, 28)")
        .replace("data folder(val=0.25)", "data fashion_mnist")
    )
    net = build(spec)
    assert net.classes == 10 and net.items[-1].out_shape.channels == 10
    assert check_file(spec) == []
    # The same network as the one that writes its count.
    written = tmp_path / "ten.wire"
    written.write_text(spec.read_text().replace("classes auto", "classes 10"))
    assert spec_hash(build(written)) == spec_hash(net)


def test_compile_without_the_data_is_a_located_error(tmp_path):
    spec = auto_spec(tmp_path)
    r = CliRunner().invoke(app, ["compile", str(spec)])
    assert r.exit_code == 2
    assert r.output == (
        f"{spec}:3:11: error: `classes auto` is the number of class folders of the training "
        "data, which is read only when training starts\n"
        "   3 |   classes auto\n"
        "                 ^^^^\n"
        "  = help: train the spec (`wirelang train`), or write the count: `classes N`\n"
        "\n1 error found\n"
    )
    with pytest.raises(ClassesFromData):
        build(spec)
    assert build(spec, classes=7).classes == 7


def test_auto_without_a_count_anywhere_is_an_error_everywhere(tmp_path):
    spec = auto_spec(tmp_path, data="synthetic")
    [diag] = check_file(spec)
    assert diag.severity == "error" and (diag.span.line, diag.span.col) == (3, 11)
    assert diag.message == (
        "`classes auto` is the number of class folders of `data folder(...)`; `synthetic` has "
        "no class count of its own"
    )
    assert diag.hint == "write the count: `classes N`"


def test_train_auto_folder_without_a_root_is_a_usage_error(tmp_path):
    spec = auto_spec(tmp_path)
    r = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "R")])
    assert r.exit_code == 2
    assert r.output == (
        "error: `classes auto` counts the class folders of the training data, and `data folder` "
        'has no root: pass --data-root DIR or write `data folder(root="DIR")`\n'
    )
    assert not (tmp_path / "R").exists()


def test_train_auto_over_a_folder_without_class_folders_names_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    spec = auto_spec(tmp_path)
    r = CliRunner().invoke(
        app, ["train", str(spec), "--out", str(tmp_path / "R"), "--data-root", str(empty)]
    )
    assert r.exit_code == 1
    assert r.output.startswith(f"error: folder: {empty}: no class folders (")
    assert not (tmp_path / "R").exists()


def test_python_datasets_say_how_many_classes(tmp_path, capsys):
    import torch
    from torch.utils.data import Subset, TensorDataset

    import wirelang

    class Named(TensorDataset):  # as torchvision's ImageFolder and CIFAR10 name their classes
        classes = ["ant", "bee", "cat"]

    x = torch.randn(8, 3, 12, 12)
    y = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    # a `classes` list wins over the labels (class 2 has no image here)
    r = wirelang.train(auto_spec(tmp_path), train_data=Named(x, y), out=tmp_path / "A")
    assert "classes auto: 3 (the datasets passed)" in capsys.readouterr().out
    assert wirelang.check(r.run_dir / "spec.wire").classes == 3
    # else one more than the largest label held in memory, over every split given
    val = TensorDataset(torch.randn(4, 3, 12, 12), torch.tensor([0, 3, 1, 2]))
    r = wirelang.train(
        auto_spec(tmp_path),
        train_data=Subset(TensorDataset(x, y), range(6)),
        val_data=val,
        out=tmp_path / "B",
        verbose=False,
    )
    assert wirelang.check(r.run_dir / "spec.wire").classes == 4
    assert r.model(torch.randn(2, 3, 12, 12)).shape == (2, 4)


def test_python_datasets_without_a_count_are_refused_before_the_run_folder(tmp_path):
    import torch
    from torch.utils.data import Dataset

    import wirelang

    class Lazy(Dataset):  # labels only one item at a time: nothing to count
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.randn(3, 12, 12), i % 2

    with pytest.raises(wirelang.train.RunError) as err:
        wirelang.train(auto_spec(tmp_path), train_data=Lazy(), out=tmp_path / "R", verbose=False)
    assert str(err.value) == (
        "`classes auto` with datasets passed from Python takes the count from the training "
        "dataset's `classes` list or from labels held in memory (`targets`, TensorDataset), and "
        "these datasets have neither: write `classes N` in the spec"
    )
    assert not (tmp_path / "R").exists()
