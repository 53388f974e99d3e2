"""DistributedDataParallel on CPU processes (gloo): the same path as --gpus N with NCCL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_train import run, weights, write_spec

from wirelang.runs import checkpoint as ckpt
from wirelang.runs.layout import read_metrics
from wirelang.train import distributed, evaluate_run
from wirelang.train.distributed import free_port

# Each rank trains through the library as it would under torchrun, then saves what it holds.
RANK_SCRIPT = """
import sys, torch
from wirelang.train import TrainOptions, train
result = train(TrainOptions(spec=sys.argv[1], out=sys.argv[2]))
torch.save(result.model.state_dict(), sys.argv[3])
"""


def env(rank: int = 0, world: int = 0, port: int = 0) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    e.update(OMP_NUM_THREADS="1", CI="1")
    if world:
        e.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
    return e


def single_process_reference(spec: Path, out: Path) -> dict[str, torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks (OMP_NUM_THREADS=1)
    try:
        run(spec, out)
    finally:
        torch.set_num_threads(before)
    return weights(out / "checkpoints" / "last.pt")


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k].dtype == torch.bool or not a[k].is_floating_point():
            assert torch.equal(a[k], b[k]), k
        else:
            assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k


def test_torchrun_style_ranks_agree_with_each_other_and_one_process(tmp_path):
    spec = write_spec(tmp_path)
    port = free_port()
    out = tmp_path / "ddp"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT, str(spec), str(out), str(tmp_path / f"rank{r}.pt")],
            env=env(r, 2, port),
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert "epoch 2/2" in outputs[0] and outputs[1].strip() == ""  # rank 0 prints, rank 1 does not
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for k in rank0:  # identical weights and masks on both ranks, bit for bit
        assert torch.equal(rank0[k], rank1[k]), k
    reference = single_process_reference(spec, tmp_path / "one")
    assert_close(rank0, reference)
    assert read_metrics(out)[-1]["mask_hash"] == read_metrics(tmp_path / "one")[-1]["mask_hash"]


def test_procs_2_launcher_with_batch_norm(tmp_path):
    spec = write_spec(tmp_path)
    spec.write_text(
        spec.read_text().replace(
            "conv(8, k=3, stride=2), instancenorm", "conv(8, k=3, stride=2), batchnorm"
        )
    )
    out = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "wirelang",
            "train",
            str(spec),
            "--procs",
            "2",
            "--out",
            str(out),
            "--set",
            "checkpoint_steps=3",
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "16 x 2 cpu" in r.stdout
    records = read_metrics(out)
    assert [x["epoch"] for x in records] == [1, 2] and "test_top1" in records[-1]
    assert ckpt.read(out / "checkpoints" / "last.pt")["world_size"] == 2
    # prev.pt is the last mid-epoch checkpoint (epoch 2, step 6 of 8), holding both ranks' state;
    # a copy of the run resumed from it ends where the run did, bit for bit
    mid = ckpt.read(out / "checkpoints" / "prev.pt")
    assert (mid["within"]["epoch"], mid["within"]["step"], len(mid["within"]["ranks"])) == (2, 6, 2)
    copy = tmp_path / "copy"
    (copy / "checkpoints").mkdir(parents=True)
    for name in ("spec.wire", "config.json", "metrics.jsonl"):
        (copy / name).write_bytes((out / name).read_bytes())
    (copy / "checkpoints" / "last.pt").write_bytes((out / "checkpoints" / "prev.pt").read_bytes())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "wirelang",
            "train",
            str(spec),
            "--resume",
            str(copy),
            "--procs",
            "1",
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2
    assert r.stderr.strip().endswith(
        "was written inside epoch 2 by 2 process(es); resume it with as many (--procs/--gpus 2)"
    ), r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "wirelang", "train", str(spec), "--resume", str(copy)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )  # with the run's 2 processes
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(phase 1, epoch 2, step 6)" in r.stdout
    final, again = (ckpt.read(x / "checkpoints" / "last.pt")["model"] for x in (out, copy))
    for k in final:
        assert torch.equal(final[k], again[k]), k
    r = subprocess.run(
        [sys.executable, "-m", "wirelang", "train", str(spec), "--resume", str(copy)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "is finished" in r.stdout, r.stdout + r.stderr
    # each rank evaluated its shard with rank 0's batch-norm statistics: the checkpoint's model
    for split in ("val", "test"):
        again = evaluate_run(out, split, out / "checkpoints" / "last.pt")
        assert again["top1"] == records[-1][f"{split}_top1"]
        assert again["loss"] == pytest.approx(records[-1][f"{split}_loss"], rel=1e-5)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(x) for x in text.split()]


def test_a_dead_rank_stops_the_job(tmp_path):
    spec = write_spec(tmp_path, size=2048, epochs=20)
    out = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "wirelang", "train", str(spec), "--procs", "2", "--out", str(out)],
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # both ranks are training once the first epoch is logged
    kids = _children(launcher.pid)
    assert len(kids) == 2
    os.kill(kids[1], signal.SIGKILL)
    killed_at = time.monotonic()
    launcher.wait(timeout=60)
    assert launcher.returncode != 0
    assert time.monotonic() - killed_at < 30
    said = launcher.stderr.read().decode()
    assert "error: process 1 was killed by signal 9 (SIGKILL); stopped the others" in said
    assert "Traceback" not in said and "gloo" not in said
    assert launcher.returncode == 128 + 9
    for pid in kids:  # no rank is left behind
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


class _Ends:
    """A stand-in for a Popen whose `poll` returns None until its `n`-th call, then `code`."""

    def __init__(self, code: int | None, after: int = 0):
        self.code, self.after, self.calls = code, after, 0
        self.killed = False

    def poll(self):
        self.calls += 1
        return self.code if self.calls > self.after else None

    def kill(self):
        self.killed = True

    terminate = kill

    def wait(self, timeout=None):
        return self.code


def test_the_launcher_names_the_killed_rank_even_when_a_peer_is_seen_failing_first(capsys):
    # the race CI met: rank 0 aborts on the lost connection and is polled before the kernel
    # lets the launcher reap rank 1, which was SIGKILLed
    procs = [_Ends(-signal.SIGABRT), _Ends(-signal.SIGKILL, after=3)]
    code = distributed._watch(procs, settle_s=5.0)
    assert capsys.readouterr().err == (
        "error: process 1 was killed by signal 9 (SIGKILL); stopped the others\n"
    )
    assert code == 128 + 9


def test_the_launcher_names_the_first_failure_when_no_rank_was_killed(capsys):
    procs = [_Ends(None), _Ends(1), _Ends(-signal.SIGABRT, after=2)]
    assert distributed._watch(procs, settle_s=0.3) == 1
    assert capsys.readouterr().err == "error: process 1 exited with code 1; stopped the others\n"
