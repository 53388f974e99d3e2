"""A run folder someone damaged, or a run that was killed between two writes: every reader
falls back or refuses with a message, never silently restarts or uses a stale file."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_train import resume, run, weights, write_spec
from typer.testing import CliRunner

from wirelang.cli.commands import app
from wirelang.runs import checkpoint as ckpt
from wirelang.runs.layout import (
    BEST,
    CHECKPOINTS,
    LAST,
    MANIFEST,
    PHASE1_LAST,
    PREV,
    RunError,
    read_metrics,
)
from wirelang.runs.load import load_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three epochs with a validation split (so best.pt can be an earlier epoch than last.pt)."""
    root = tmp_path_factory.mktemp("trained")
    spec = write_spec(root, epochs=3, train_extra="")
    run(spec, root / "run")
    return spec, root / "run"


def copy_run(trained, tmp_path):
    spec, src = trained
    dst = tmp_path / "run"
    shutil.copytree(src, dst)
    return spec, dst


def test_a_stale_best_is_not_used(trained, tmp_path):
    # killed after last.pt (epoch 3, the new best) and its manifest landed but before best.pt:
    # the manifest records an older best.pt (epoch 2 here), and last.pt names epoch 3 as best
    spec, r = copy_run(trained, tmp_path)
    folder = r / CHECKPOINTS
    last = ckpt.read(folder / LAST)
    assert (last["epoch"], last["best"]["epoch"]) == (3, 3)
    stale = dict(ckpt.read(folder / PREV))  # epoch 2
    stale["best"] = {"phase": 1, "epoch": 2, "val_top1": 0.5}
    ckpt.write(folder, BEST, stale)
    said: list[str] = []
    payload, path = ckpt.best_checkpoint(r, say=said.append)
    assert path.name == LAST and payload["epoch"] == 3
    assert said == [
        "warning: manifest.json records best.pt at epoch 2 but the best is epoch 3 (a run "
        "stopped before writing it); using last.pt (epoch 3), the newest checkpoint of the best "
        "epoch"
    ]
    loaded = load_run(r)
    assert loaded.checkpoint == folder / LAST
    for k, v in last["model"].items():
        assert torch.equal(loaded.model.state_dict()[k].cpu(), v), k
    # a run from before manifests: the newest checkpoint names the best epoch, as before
    (folder / MANIFEST).unlink()
    said.clear()
    payload, path = ckpt.best_checkpoint(r, say=said.append)
    assert path.name == LAST and payload["epoch"] == 3 and said == []


def test_a_manifest_behind_its_files_still_names_the_best(tmp_path, monkeypatch):
    """Issue 14 item 4 with a manifest: the run is killed after last.pt of its best epoch
    landed, before the manifest recorded it and before best.pt was written. eval uses that
    epoch (what metrics.jsonl reports), resume continues from the checkpoint the manifest
    records and ends where an uninterrupted run ends."""
    spec = write_spec(tmp_path, epochs=3)
    real = ckpt.write

    def killed_in_epoch_3(folder, name, payload):
        if payload["epoch"] < 3:
            return real(folder, name, payload)
        if name == LAST:  # the file lands, its manifest does not
            return ckpt.save(folder / name, payload, keep_previous=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "write", killed_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut")
    monkeypatch.setattr(ckpt, "write", real)
    r, folder = tmp_path / "cut", tmp_path / "cut" / CHECKPOINTS
    assert read_metrics(r)[-1]["best_epoch"] == 3
    assert ckpt.read(folder / BEST)["epoch"] == 1  # the best before epoch 3
    said: list[str] = []
    payload, path = ckpt.best_checkpoint(r, say=said.append)
    assert (path.name, payload["epoch"]) == (LAST, 3)
    assert said == [
        "warning: manifest.json records best.pt at epoch 1 but the best is epoch 3 (a run "
        "stopped before writing it); using last.pt (epoch 3), the newest checkpoint of the best "
        "epoch"
    ]
    said.clear()
    payload, path = ckpt.resume_point(r, say=said.append)
    assert (path.name, payload["epoch"]) == (PREV, 2)
    assert said == [
        f"warning: {folder / LAST} is not a checkpoint manifest.json records (it changed after "
        "the manifest was written); using prev.pt instead (epoch 2)"
    ]
    resume(spec, r)
    run(spec, tmp_path / "whole")
    for name in (LAST, BEST):
        assert_same_weights(folder / name, tmp_path / "whole" / CHECKPOINTS / name)
    said.clear()
    assert ckpt.best_checkpoint(r, say=said.append)[0]["epoch"] == 3 and said == []


def test_best_is_used_when_it_holds_the_best_epoch(trained, tmp_path):
    spec, r = copy_run(trained, tmp_path)
    last = ckpt.read(r / CHECKPOINTS / LAST)
    best = ckpt.read(r / CHECKPOINTS / BEST)
    assert (best["phase"], best["epoch"]) == (last["best"]["phase"], last["best"]["epoch"])
    assert ckpt.best_checkpoint(r)[1].name == (LAST if best["epoch"] == last["epoch"] else BEST)


@pytest.mark.parametrize("damage", ["empty", "truncated", "flipped"])
def test_a_damaged_last_falls_back_to_prev_on_resume(trained, tmp_path, damage, capsys):
    spec, r = copy_run(trained, tmp_path)
    path = r / CHECKPOINTS / LAST
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        i = len(data) // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    found = ckpt.resume_point(r, say=print)
    assert found is not None and found[1].name == PREV and found[0]["epoch"] == 2
    reason = str(pytest.raises(ckpt.CorruptCheckpoint, ckpt.read, path).value)
    assert capsys.readouterr().out == f"warning: {reason}; using prev.pt instead (epoch 2)\n"
    # the best epoch (3) was in last.pt and best.pt: with best.pt damaged too, eval and
    # inspect refuse (the manifest says epoch 3 is the best) instead of using epoch 2
    (r / CHECKPOINTS / BEST).write_bytes(b"")
    empty = str(pytest.raises(ckpt.CorruptCheckpoint, ckpt.read, r / CHECKPOINTS / BEST).value)
    refusal = (
        f"error: no readable checkpoint in {r / CHECKPOINTS} holds the best epoch (epoch 3): "
        f"{empty}; choose a checkpoint file with --checkpoint"
    )
    for command in ("inspect", "eval"):
        out = CliRunner().invoke(app, [command, str(r)])
        assert out.exit_code == 1 and out.output.strip().splitlines()[-1] == refusal, out.output
    chosen = CliRunner().invoke(app, ["eval", str(r), "--checkpoint", str(r / CHECKPOINTS / PREV)])
    assert chosen.exit_code == 0 and "top1" in chosen.output, chosen.output
    # a run from before manifests: the newest good checkpoint is used, as before
    (r / CHECKPOINTS / MANIFEST).unlink()
    assert CliRunner().invoke(app, ["inspect", str(r)]).exit_code == 0
    evaluated = CliRunner().invoke(app, ["eval", str(r)])
    assert evaluated.exit_code == 0 and "top1" in evaluated.output, evaluated.output


def test_no_checkpoint_left_refuses_to_restart_silently(trained, tmp_path):
    spec, r = copy_run(trained, tmp_path)
    (r / CHECKPOINTS / LAST).unlink()
    (r / CHECKPOINTS / PREV).unlink()
    epochs = [row["epoch"] for row in read_metrics(r)]
    with pytest.raises(
        RunError, match="logged 3 epoch\\(s\\) in metrics.jsonl but holds no last.pt or prev.pt"
    ):
        resume(spec, r)
    assert [row["epoch"] for row in read_metrics(r)] == epochs  # nothing appended


def rewrite_manifest(path, edit) -> None:
    """The manifest after `edit(data)`, with its checksum made right again (a hostile writer
    can compute one as well as wirelang)."""
    data = json.loads(path.read_text())
    data.pop("checksum")
    edit(data)
    path.write_text(json.dumps({**data, "checksum": ckpt._manifest_digest(data)}))


def damage_manifest(path, damage: str) -> None:
    text = path.read_text()
    if damage == "empty":
        path.write_text("")
    elif damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "flipped_byte":  # a byte that is no longer UTF-8
        i = text.index('"checksum"', 100) + 20
        data = text.encode()
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])
    elif damage == "flipped_bit":  # still JSON, a digit of last.pt's checksum changed
        i = text.index('"checksum": "') + len('"checksum": "')
        path.write_text(text[:i] + ("1" if text[i] == "0" else "0") + text[i + 1 :])
    elif damage == "huge":
        with open(path, "wb") as f:
            f.truncate(50_000_000)
    elif damage == "list":
        path.write_text("[]")
    elif damage == "deep":
        path.write_text("[" * 30_000)
    elif damage == "wrong_types":
        rewrite_manifest(path, lambda d: d["checkpoints"]["last"].update(epoch="3"))
    elif damage == "foreign_file":
        rewrite_manifest(path, lambda d: d["checkpoints"]["last"].update(file="../../x.pt"))
    elif damage == "folder":
        path.unlink()
        path.mkdir()
    else:
        raise AssertionError(damage)


MANIFEST_DAMAGE = {
    "empty": "empty",
    "truncated": None,  # the JSON decoder's own words, computed below
    "flipped_byte": "not UTF-8 text",
    "flipped_bit": "its checksum does not match its contents (corrupt or edited)",
    "huge": "larger than 65,536 bytes",
    "list": "a JSON list, not an object",
    "deep": "not JSON: nested too deeply",
    "wrong_types": "`checkpoints.last.epoch` is not a whole number from 0 to 1,000,000,000",
    "foreign_file": "`checkpoints.last.file` is not last.pt",
    "folder": "not a regular file",
}


@pytest.mark.parametrize("damage", MANIFEST_DAMAGE)
def test_a_damaged_manifest_is_ignored_with_a_warning(trained, tmp_path, damage):
    # unusable, it is treated as missing: the files alone choose, as for a run from before
    # manifests; one warning line, never a traceback
    spec, r = copy_run(trained, tmp_path)
    path = r / CHECKPOINTS / MANIFEST
    text = path.read_text()
    damage_manifest(path, damage)
    why = MANIFEST_DAMAGE[damage]
    if why is None:
        err = pytest.raises(json.JSONDecodeError, json.loads, text[: len(text) // 2]).value
        why = f"not JSON: {err.msg} at line {err.lineno} column {err.colno}"
    warning = f"warning: {path} cannot be used ({why}); choosing checkpoints from the files alone"
    said: list[str] = []
    payload, used = ckpt.resume_point(r, say=said.append)
    assert (used.name, payload["epoch"]) == (LAST, 3) and said == [warning]
    said.clear()
    payload, used = ckpt.best_checkpoint(r, say=said.append)
    assert (used.name, payload["epoch"]) == (LAST, 3) and said == [warning]
    out = CliRunner().invoke(app, ["inspect", str(r)])
    assert out.exit_code == 0 and warning in out.output and "Traceback" not in out.output
    # the next checkpoint written replaces it with a good one
    if damage == "folder":
        path.rmdir()
    ckpt.write(r / CHECKPOINTS, BEST, ckpt.read(r / CHECKPOINTS / BEST))
    said.clear()
    assert ckpt.best_checkpoint(r, say=said.append)[0]["epoch"] == 3 and said == []
    assert set(json.loads(path.read_text())["checkpoints"]) == {"last", "prev", "best"}


def test_a_manifest_of_another_network_is_refused(trained, tmp_path):
    spec, r = copy_run(trained, tmp_path)
    path = r / CHECKPOINTS / MANIFEST
    ours = json.loads(path.read_text())["spec_hash"]

    def other_network(data):
        data["spec_hash"] = "0123456789abcdef"
        for entry in data["checkpoints"].values():
            entry["spec_hash"] = "0123456789abcdef"

    rewrite_manifest(path, other_network)
    message = (
        f"{path} belongs to another network (spec hash 0123456789abcdef, the run's is {ours}); "
        "delete it to choose checkpoints from the files alone"
    )
    with pytest.raises(RunError) as err:
        resume(spec, r)
    assert str(err.value) == message
    out = CliRunner().invoke(app, ["eval", str(r)])
    assert out.exit_code == 1 and out.output.strip().splitlines()[-1] == f"error: {message}"
    # one entry of another network is enough
    rewrite_manifest(path, lambda d: d.update(spec_hash=ours))
    with pytest.raises(RunError, match="belongs to another network"):
        resume(spec, r)


def test_a_checkpoint_of_another_network_is_refused(trained, tmp_path):
    spec, r = copy_run(trained, tmp_path)
    for name in (LAST, PREV, BEST):
        payload = ckpt.read(r / CHECKPOINTS / name)
        payload["spec_hash"] = "0123456789abcdef"
        ckpt.save(r / CHECKPOINTS / name, payload)
    with pytest.raises(RunError, match="is a checkpoint of another network"):
        resume(spec, r)
    r2 = CliRunner().invoke(app, ["eval", str(r)])
    assert r2.exit_code == 1 and "is a checkpoint of another network" in r2.output


def test_non_finite_weights_are_never_used(trained, tmp_path, capsys):
    spec, r = copy_run(trained, tmp_path)
    payload = ckpt.read(r / CHECKPOINTS / LAST)
    name = next(k for k, v in payload["model"].items() if v.is_floating_point())
    payload["model"][name] = payload["model"][name].clone().fill_(float("nan"))
    ckpt.save(r / CHECKPOINTS / LAST, payload)  # a valid checksum over NaN weights
    found = ckpt.resume_point(r, say=print)
    assert found is not None and found[1].name == PREV
    assert f"holds non-finite weights ({name})" in capsys.readouterr().out
    assert weights(r / CHECKPOINTS / PREV).keys() == found[0]["model"].keys()


def test_a_checkpoint_whose_weights_diverge_is_set_aside(tmp_path):
    # lr x 1e15 from epoch 2, a checkpoint after every step: step 8 (the first of epoch 2)
    # blows the weights up to ~1e13 with a finite loss, its checkpoint is written, and step 9
    # computes a NaN loss from those weights. That checkpoint is not a good one.
    from test_train import cli

    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    r = cli(
        "train",
        str(spec),
        "--out",
        str(out),
        "--set",
        "schedule=multistep(milestones=[1], gamma=1e15)",
        "--set",
        "checkpoint_steps=1",
    )
    assert r.exit_code == 1, r.output
    line = next(x for x in r.output.splitlines() if x.startswith("error:"))
    assert "loss is nan at step 9" in line
    assert "diverged.pt" in line and "the last good checkpoint is" in line
    diverged = ckpt.read(out / CHECKPOINTS / "diverged.pt")
    assert diverged["step"] == 8
    kept = ckpt.read(out / CHECKPOINTS / LAST)
    assert kept["step"] == 7 and "within" not in kept  # the end of epoch 1
    assert not (out / CHECKPOINTS / PREV).exists()
    # the kept weights give finite outputs; the set-aside ones do not
    model = load_run(out).model
    x = torch.randn(8, 3, 16, 16)
    assert bool(torch.isfinite(model(x)).all())
    model.load_state_dict(diverged["model"])
    assert not bool(torch.isfinite(model(x)).all())


# one phase of 2 epochs; two phases (1 epoch of phase two after 2 of phase one: phase1_last.pt
# is written between a rotation of last.pt and phase two's first best.pt)
KILLED_RUNS = {
    "one_phase": {"epochs": 2},
    "two_phases": {
        "wiring": "lottery_one_shot",
        "epochs": 2,
        "train_extra": "phase2 {\n epochs 1\n }",
    },
}


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    made = {}

    def reference(kind: str):
        if kind not in made:
            root = tmp_path_factory.mktemp(kind)
            spec = write_spec(root, **KILLED_RUNS[kind])
            run(spec, root / "reference")
            made[kind] = spec, root / "reference"
        return made[kind]

    return reference


@pytest.mark.parametrize("kind", KILLED_RUNS)
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_kill_at_every_write_resumes_to_the_same_run(
    references, tmp_path, monkeypatch, kind, when
):
    import multiprocessing

    import kill_driver

    spec, reference = references(kind)
    ref_manifest = json.loads((reference / CHECKPOINTS / MANIFEST).read_text())
    roles = {"last", "prev", "best"} | ({"phase1_last"} if kind == "two_phases" else set())
    assert set(ref_manifest["checkpoints"]) == roles
    # each killed run is a process forked from a server that has imported torch and the trainer
    for name, value in kill_driver.SERVER_ENV.items():  # what the server starts with
        monkeypatch.setenv(name, value)
    server = multiprocessing.get_context("forkserver")
    server.set_forkserver_preload(kill_driver.SERVER_PRELOAD)
    n, manifests = 0, 0
    while True:
        n += 1
        out, log = tmp_path / f"{when}{n}", tmp_path / f"{when}{n}.log"
        proc = server.Process(
            target=kill_driver.killed_run, args=(str(spec), str(out), n, when, str(log))
        )
        proc.start()
        proc.join(300)
        if proc.is_alive():  # hung: stop it, and fail below with its log
            proc.kill()
            proc.join()
        if proc.exitcode == 3:
            break
        assert proc.exitcode == 9, log.read_text()[-2000:]
        killed = sorted(p.name for p in (out / CHECKPOINTS).iterdir())
        where = f"killed {when} write {n}, leaving {killed}"
        manifests += MANIFEST in killed
        if any(name.endswith(".pt") for name in killed):
            # before resuming: the best checkpoint a reader is given holds the best epoch as
            # it stood when that checkpoint was written, with at most one line said
            said: list[str] = []
            best = ckpt.best_checkpoint(out, say=said.append)[0]
            assert _epoch(best) == (best["best"]["phase"], best["best"]["epoch"]), where
            assert len(said) <= 1, (where, said)
        resume(spec, out)
        # the same weights, the same metrics lines once each, the same best checkpoint
        assert_same_weights(out / CHECKPOINTS / LAST, reference / CHECKPOINTS / LAST)
        epochs = [(r["phase"], r["epoch"]) for r in read_metrics(out)]
        assert epochs == [(r["phase"], r["epoch"]) for r in read_metrics(reference)], where
        assert read_metrics(out)[-1]["mask_hash"] == read_metrics(reference)[-1]["mask_hash"]
        assert ckpt.find_checkpoint(out).name == ckpt.find_checkpoint(reference).name, where
        best, ref_best = ckpt.best_checkpoint(out)[0], ckpt.best_checkpoint(reference)[0]
        assert _epoch(best) == _epoch(ref_best), where
        assert_same_weights(ckpt.find_checkpoint(out), ckpt.find_checkpoint(reference))
        if kind == "two_phases":
            assert_same_weights(
                out / CHECKPOINTS / PHASE1_LAST, reference / CHECKPOINTS / PHASE1_LAST
            )
        # and the manifest records every file as it is: reading it says nothing
        manifest = json.loads((out / CHECKPOINTS / MANIFEST).read_text())
        assert set(manifest["checkpoints"]) == roles, where
        for entry in manifest["checkpoints"].values():
            got = ckpt._read_verified(out / CHECKPOINTS / entry["file"])[1]
            assert got == entry["checksum"], (where, entry["file"])
        said = []
        ckpt.resume_point(out, say=said.append)
        ckpt.best_checkpoint(out, say=said.append)
        assert said == [], (where, said)
    # every epoch's line, renames, best.pt, phase1_last.pt and manifest writes were reached
    print("writes:", n - 1)
    assert n > (16 if kind == "two_phases" else 8) and manifests > 0


def _epoch(payload) -> tuple[int, int]:
    return payload["phase"], payload["epoch"]


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
