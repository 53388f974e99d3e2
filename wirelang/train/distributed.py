"""Processes: detect a torchrun-style job, join it, and launch one for --procs / --gpus.

A job is described by the environment torchrun sets: RANK, WORLD_SIZE, LOCAL_RANK, and
MASTER_ADDR / MASTER_PORT for the rendezvous. `wirelang train --procs N` (gloo on CPU) and
`--gpus N` (NCCL, one device per process) start N copies of `wirelang train SPEC --resume RUN`
with that environment themselves, so every process, however it was started, takes the same
path: join the group, then train the run directory.

A rank that dies must not leave the others hanging: the process group has a finite timeout,
and the launcher watches its children and stops the rest as soon as one fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from wirelang.runs.layout import LAUNCHED_ENV, RunError, usable_cores

# Seconds a collective may wait for the other ranks (a checkpoint write on rank 0 included).
TIMEOUT_S = float(os.environ.get("WIRELANG_DIST_TIMEOUT", "600"))


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def env_job() -> tuple[int, int, int] | None:
    """(rank, local_rank, world_size) when this process belongs to a torchrun-style job."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank, int(os.environ.get("LOCAL_RANK", rank)), world


def check_gpus(n: int) -> None:
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n > have:
        raise RunError(f"--gpus {n}: this machine has {have} CUDA device{'s' if have != 1 else ''}")


def check_device(device: str) -> None:
    """`--device cpu|cuda|cuda:N`, and a CUDA device this machine has (else a usage error)."""
    m = re.fullmatch(r"cpu|cuda(?::(\d+))?", device)
    if m is None:
        raise RunError(f"--device takes cpu, cuda or cuda:N, not {device!r}", 2)
    if device == "cpu":
        return
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have == 0:
        raise RunError(
            f"--device {device}: no CUDA device is available to torch "
            "(torch.cuda.is_available() is False); use --device cpu",
            2,
        )
    if m.group(1) is not None and int(m.group(1)) >= have:
        raise RunError(
            f"--device {device}: this machine has {have} CUDA device"
            f"{'s' if have != 1 else ''} (cuda:0 to cuda:{have - 1})",
            2,
        )


def init(device_kind: str) -> Dist:
    """Join the job described by the environment (or run alone); pick this process's device:
    `device_kind` is cpu, cuda (device 0, or the local rank's) or cuda:N (one process)."""
    job = env_job()
    if job is None:
        device = torch.device("cuda", 0) if device_kind == "cuda" else torch.device(device_kind)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return Dist(device=device)
    rank, local_rank, world = job
    if device_kind.startswith("cuda"):
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if world > 1 and not dist.is_initialized():
        # NCCL's async error handling turns a timed-out collective into an abort, not a hang.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        kwargs = {"device_id": device} if backend == "nccl" else {}
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=TIMEOUT_S), **kwargs)
    return Dist(rank=rank, local_rank=local_rank, world_size=world, device=device)


def settle(d: Dist) -> None:
    """Wait until every rank has finished the run, before any tears down. Rank 0 writes the
    results after the last collective; a rank that left meanwhile closes its connections
    under the others' transport threads (a rank 0 aborted at exit once in ~10 runs of a
    `--procs 2` test under load, after its run had finished)."""
    if d.is_distributed and dist.is_initialized():
        dist.barrier(device_ids=[d.local_rank] if d.device.type == "cuda" else None)


def teardown(d: Dist) -> None:
    if d.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------- collectives
def all_sum(d: Dist, values: list[float]) -> list[float]:
    """Sum a few numbers over every rank (float64, so counts stay exact)."""
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    if d.is_distributed:
        dist.all_reduce(t)
    return t.tolist()


def all_agree(d: Dist, ok: bool) -> bool:
    """True when `ok` holds on every rank (one rank's failure stops all of them together)."""
    if not d.is_distributed:
        return ok
    t = torch.tensor([0 if ok else 1], dtype=torch.int32, device=d.device)
    dist.all_reduce(t)
    return int(t.item()) == 0


def same_everywhere(d: Dist, text: str) -> bool:
    """True when `text` (e.g. the mask hash) is identical on every rank."""
    if not d.is_distributed:
        return True
    h = int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big")
    t = torch.tensor([h, -h], dtype=torch.int64, device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)  # max(h) == -max(-h) iff min == max
    return int(t[0]) == -int(t[1])


def sync_buffers(d: Dist, model: torch.nn.Module) -> None:
    """Rank 0's floating-point buffers (batch-norm running statistics) on every rank.

    DDP broadcasts them before each forward, but each rank's last training step then updates
    its own copy from its own batch; evaluating with rank 0's makes every shard see the model
    the checkpoint holds, so `wirelang eval` reproduces the logged numbers.
    """
    if d.is_distributed:
        for buf in model.buffers():
            if buf.is_floating_point():
                dist.broadcast(buf, src=0)


def gather_to_all(d: Dist, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank (mid-epoch RNG states and counters)."""
    if not d.is_distributed:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_text(d: Dist, text: str | None) -> str | None:
    """Rank 0's string on every rank (e.g. the run directory rank 0 chose)."""
    if not d.is_distributed:
        return text
    box = [text]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---------------------------------------------------------------------------- launcher
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(spec: Path, run_dir: Path, nprocs: int, device_kind: str) -> int:
    """Run `wirelang train SPEC --resume RUN --device KIND` in `nprocs` processes; the first
    failure stops all.

    Returns the exit code of the job: 0, or the code of the first process that failed.
    """
    port = free_port()
    threads = max(1, usable_cores() // nprocs) if device_kind == "cpu" else 1
    # the device goes with them: a resumed run may move (a CPU run resumed with --gpus), and
    # its config.json still names the device it started on
    argv = [sys.executable, "-m", "wirelang", "train", str(spec), "--resume", str(run_dir)]
    argv += ["--device", device_kind]
    procs = []
    for rank in range(nprocs):
        env = dict(
            os.environ,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE=str(nprocs),
            LOCAL_WORLD_SIZE=str(nprocs),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            **{LAUNCHED_ENV: "1"},
        )
        env.setdefault("OMP_NUM_THREADS", str(threads))  # N processes share the cores
        procs.append(subprocess.Popen(argv, env=env, preexec_fn=_die_with_parent))
    try:
        return _watch(procs)
    except KeyboardInterrupt:
        _stop(procs)
        return 130


def _watch(procs: list[subprocess.Popen], settle_s: float = 3.0) -> int:
    while True:
        codes = [p.poll() for p in procs]
        if any(c not in (None, 0) for c in codes):
            ended = _settle(procs, codes, settle_s)
            first = _cause(ended)
            code = ended[first]
            _stop(procs)
            sys.stderr.write(f"error: process {first} {_how_it_ended(code)}; stopped the others\n")
            return code if code > 0 else 128 - code
        if all(c == 0 for c in codes):
            return 0
        time.sleep(0.2)


def _settle(procs: list[subprocess.Popen], codes: list[int | None], settle_s: float) -> dict:
    """The exit codes of the ranks that end within `settle_s` of the first failure, in order.

    A rank killed from outside closes its sockets before the kernel lets its parent reap it, so a
    peer can notice the lost connection, fail, and be seen first. Waiting a moment lets the
    cause show up beside its consequences.
    """
    ended = {i: c for i, c in enumerate(codes) if c is not None}
    deadline = time.monotonic() + settle_s
    while len(ended) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.05)
        for i, p in enumerate(procs):
            if i not in ended and (c := p.poll()) is not None:
                ended[i] = c
    return ended


def _cause(ended: dict[int, int]) -> int:
    """The rank that brought the job down.

    A peer that loses contact either exits with an error or aborts (C++ `terminate` raises
    SIGABRT), so a rank killed by any other signal is the cause; else the first rank that failed.
    """
    failed = [i for i, c in ended.items() if c != 0]
    killed = [i for i in failed if ended[i] < 0 and -ended[i] != signal.SIGABRT]
    return (killed or failed)[0]


def _how_it_ended(code: int) -> str:
    """`exited with code 1`, or `was killed by signal 9 (SIGKILL)` for a negative Popen code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = f" ({signal.Signals(-code).name})"
    except ValueError:
        name = ""
    return f"was killed by signal {-code}{name}"


def _stop(procs: list[subprocess.Popen], grace_s: float = 10.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_s
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        if p.poll() is None:
            p.kill()
            p.wait()


def _die_with_parent() -> None:
    # Linux: a SIGKILLed launcher cannot stop its children, so ask the kernel to (prctl).
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
