"""Speed of compiled wirelang models against hand-written PyTorch in the DNW authors' style.

    python benchmarks/speed.py            # the full run (batch 128, 7 rounds)
    python benchmarks/speed.py --quick    # a smoke run (batch 8, 2 rounds): same lines, noisy values
    python benchmarks/speed.py --device cuda   # everything on the GPU, timings synchronised

Every comparison runs its candidates ALTERNATELY in one process (A, B, A, B, ...) and reports
medians, so that a machine shared with other jobs slows both sides alike; the ratios are the
figures to read, the absolute times only say how loaded the machine was. Printed lines:

  ratio train NET: ...      train-step throughput (forward, backward, SGD step), compiled spec
                            against `benchmarks/handwritten.py` (speedup > 1: wirelang faster)
  ratio mask NET: ...       the same compiled network with its DNW mask against a frozen copy of
                            the mask (`wiring fixed` semantics): what choosing the top k costs,
                            and that selection timed alone as a share of the DNW step
  ratio inference ...       batch-1 latency at 224x224 of MobileNetV1-DNW x0.225 (masked model,
                            compact export) and a dense MobileNetV1 x0.25; the quick start's
                            compact export against its masked model at batch 1 and 64
  ratio check / front end   a whole `wirelang check` process (CPU seconds), and 1 MB of spec
                            text (lets; a frozen MobileNet export) read per second beyond that
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks import handwritten  # noqa: E402
from wirelang.backend.api import compile_network  # noqa: E402
from wirelang.frontend import build  # noqa: E402

CPU = torch.device("cpu")

TRAIN = [
    ("cifar_tiny", "specs/cifar_tiny.wire", handwritten.StaticTiny),
    ("cifar_tiny_discrete", "specs/cifar_tiny_discrete.wire", handwritten.DiscreteTiny),
    ("mbv1_cifar_dnw", "specs/mbv1_cifar_dnw.wire", handwritten.MobileNetV1Like),
]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA runs kernels asynchronously, so a timer read
    without it measures the launches, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved round by round."""
    device = torch.device(device)
    for _ in range(warmup):
        for f in fns.values():
            f()
    synchronize(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            synchronize(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def batch(size: int, device: torch.device, hw: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A random CIFAR-sized batch (inputs, labels) on `device`."""
    x, y = torch.randn(size, 3, hw, hw), torch.randint(0, 10, (size,))
    return x.to(device), y.to(device)


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One SGD step of `model` on (x, y), with the model moved to the batch's device."""
    model.to(x.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def freeze_masks(model) -> None:
    """Turn every DNW mask of a compiled model into a fixed one holding its current top k:
    the network of a `wiring fixed` spec with the same edges, without the ranking."""
    for mask in model.masks().values():
        mask._set_fixed(mask.topk())
        mask.method, mask.frozen = "fixed", True


def machine(device: torch.device | str = "cpu") -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def bench_train(size: int, rounds: int, only: set[str] | None, device: torch.device = CPU) -> None:
    for name, spec, hand_cls in TRAIN:
        if only and name not in only:
            continue
        torch.manual_seed(0)
        compiled = compile_network(build(ROOT / spec))
        hand = hand_cls()
        x, y = batch(size, device)
        t = alternate(
            {"wirelang": train_step(compiled, x, y), "hand": train_step(hand, x, y)},
            rounds,
            device=device,
        )
        print(
            f"ratio train {name}: wirelang {size / t['wirelang']:.1f} img/s ({1e3 * t['wirelang']:.0f} ms/step), "
            f"hand-written {size / t['hand']:.1f} img/s ({1e3 * t['hand']:.0f} ms/step), "
            f"speedup {t['hand'] / t['wirelang']:.2f}x",
            flush=True,
        )


def bench_mask(size: int, rounds: int, only: set[str] | None, device: torch.device = CPU) -> None:
    for name, spec, _ in TRAIN:
        if only and name not in only:
            continue
        torch.manual_seed(0)
        dnw = compile_network(build(ROOT / spec))
        fixed = copy.deepcopy(dnw)
        freeze_masks(fixed)
        x, y = batch(size, device)
        t = alternate(
            {"dnw": train_step(dnw, x, y), "fixed": train_step(fixed, x, y)},
            rounds,
            device=device,
        )
        select = selection_seconds(dnw, device)
        print(
            f"ratio mask {name}: dnw {1e3 * t['dnw']:.0f} ms/step, fixed {1e3 * t['fixed']:.0f} ms/step, "
            f"overhead {100 * (t['dnw'] / t['fixed'] - 1):+.1f}%; the top-k selection alone "
            f"{1e3 * select:.1f} ms, {100 * select / t['dnw']:.1f}% of the dnw step",
            flush=True,
        )


def selection_seconds(model, device: torch.device, calls: int = 25) -> float:
    """Median seconds of the work only a DNW mask does in a step: choosing every mask's top k
    of the current weights. The A/B of whole steps above carries the noise of two ~200 ms
    steps; this times the difference itself, in isolation, so a 5% overhead is not lost in it."""
    masks = list(model.masks().values())
    with torch.no_grad():
        return alternate({"select": lambda: [m.topk() for m in masks]}, calls, 2, device)["select"]


def bench_inference(rounds: int, batch: int = 1, device: torch.device = CPU) -> None:
    torch.manual_seed(0)
    net = build(ROOT / "specs/mbv1_dnw.wire")
    masked = compile_network(net).eval().to(device)
    dense = compile_network(build(ROOT / "specs/mbv1_x25.wire")).eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    fns = {"masked": lambda: masked(x), "dense": lambda: dense(x)}
    compact_note = ""
    try:
        from wirelang.export.compact import plan_network
        from wirelang.export.standalone import instantiate

        compact = instantiate(plan_network(net, masked, device=device.type)).eval().to(device)
        fns["compact"] = lambda: compact(x)
    except Exception as err:  # the exporter is optional here: measure what exists
        compact_note = f" (compact export unavailable: {type(err).__name__}: {err})"
    with torch.inference_mode():  # ~10 ms calls: ten times the rounds, as for the quick start
        t = alternate(fns, 10 * rounds, warmup=2, device=device)
    line = (
        f"ratio inference mbv1_dnw x0.225 224x224 batch {batch}: masked {1e3 * t['masked']:.1f} ms, "
        f"dense MobileNetV1 x0.25 {1e3 * t['dense']:.1f} ms"
    )
    if "compact" in t:
        line += (
            f", compact {1e3 * t['compact']:.1f} ms; compact/masked speedup {t['masked'] / t['compact']:.2f}x, "
            f"compact vs dense {t['dense'] / t['compact']:.2f}x"
        )
    print(line + f"; masked vs dense {t['dense'] / t['masked']:.2f}x" + compact_note, flush=True)


def bench_compact_quickstart(rounds: int, device: torch.device = CPU) -> None:
    """The quick start's compact export against its masked model, batch 1 and 64."""
    from wirelang.export.compact import plan_network
    from wirelang.export.standalone import instantiate

    torch.manual_seed(0)
    net = build(ROOT / "specs/quickstart.wire")
    masked = compile_network(net).eval().to(device)
    compact = instantiate(plan_network(net, masked, device=device.type)).eval().to(device)
    for size, reps in ((1, 10 * rounds), (64, 5 * rounds)):  # calls of ms: more rounds
        x = torch.randn(size, 1, 28, 28, device=device)
        with torch.inference_mode():
            fns = {"masked": lambda x=x: masked(x), "compact": lambda x=x: compact(x)}
            t = alternate(fns, reps, 3, device)
        print(
            f"ratio inference quickstart batch {size}: masked {1e3 * t['masked']:.2f} ms, compact "
            f"{1e3 * t['compact']:.2f} ms; compact/masked speedup {t['masked'] / t['compact']:.2f}x",
            flush=True,
        )


def process_cpu(args: list[str], reps: int) -> float:
    """Median CPU seconds (user + system) of a whole process: what a preemption by other jobs
    does not add to, unlike its wall time."""
    import resource
    import subprocess

    times = []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(args, cwd=ROOT, capture_output=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times)


def bench_front(reps: int, cold: bool = True) -> None:
    """The front end: a whole `wirelang check` process, and spec text read per second (1 MB of
    `let`s, and a frozen export of MobileNetV1-DNW of about 1 MB read back)."""
    import compileall
    import os
    import shutil
    import tempfile

    from benchmarks.compile_time import frozen_text, lets_text

    check = [sys.executable, "-m", "wirelang", "check"]
    uncompiled = None
    if cold and os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # This environment stops Python from caching compiled modules, so every process of a
        # source checkout compiles wirelang's again (0.57 against 0.47 s, 21 runs each,
        # 2026-12-03); an installed package has them (pip compiles them), and elsewhere a
        # checkout caches them at its first import. Measured both ways: without, after
        # removing the checkout's caches of wirelang's modules (build artifacts, ignored by git).
        for cache in (ROOT / "wirelang").rglob("__pycache__"):
            shutil.rmtree(cache)
        uncompiled = process_cpu([*check, "specs/cifar_tiny.wire"], reps)
    compileall.compile_dir(ROOT / "wirelang", quiet=1)
    start = process_cpu([*check, "specs/cifar_tiny.wire"], reps)
    print(
        f"ratio check cifar_tiny: a whole process {start:.2f} s CPU (median of {reps})"
        + (
            ""
            if uncompiled is None
            else f"; {uncompiled:.2f} s compiling wirelang's modules at every start"
        ),
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in (("lets", lets_text), ("frozen mbv1_dnw", frozen_text)):
            path = Path(tmp) / "text.wire"
            path.write_text(make(1_000_000), encoding="utf-8")
            mb = path.stat().st_size / 1e6
            t = process_cpu([*check, str(path)], max(1, reps // 2))
            # the rate of reading text: the process's start and a small spec's check aside
            print(
                f"ratio front end {kind}, {mb:.2f} MB: `wirelang check` {t:.2f} s CPU, "
                f"{mb / (t - start):.2f} MB/s beyond the {start:.2f} s of a small spec's check",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="batch 8, 2 rounds: checks that everything runs"
    )
    p.add_argument("--batch", type=int, default=None, help="training batch (default 128, quick 8)")
    p.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds (default 7, quick 2)"
    )
    p.add_argument("--only", default="", help="comma-separated networks to train (default all)")
    p.add_argument(
        "--skip", default="", help="comma-separated parts to skip: train, mask, inference, front"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads (default 2; on a machine loaded by other jobs, 1 avoids measuring "
        "how long each parallel operator waits for its second thread)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda (or cuda:N): where models and batches live; CUDA timings synchronise",
    )
    args = p.parse_args(argv)
    size = args.batch or (8 if args.quick else 128)
    rounds = args.rounds or (2 if args.quick else 7)
    only = {s for s in args.only.split(",") if s} or None
    skip = {s for s in args.skip.split(",") if s}
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    print(f"machine: {machine(device)}; device {device}")
    print(f"load average at start: {load()}; batch {size}, {rounds} alternating rounds", flush=True)
    if "train" not in skip:
        bench_train(size, rounds, only, device)
    if "mask" not in skip:
        bench_mask(size, rounds, only, device)
    if "inference" not in skip:
        bench_inference(rounds, device=device)
        bench_compact_quickstart(rounds, device)
    if "front" not in skip:
        bench_front(3 if args.quick else 11, cold=not args.quick)
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
