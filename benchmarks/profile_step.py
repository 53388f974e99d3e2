"""Where the time of one training step goes: forward, backward and the optimizer step timed
apart, for the compiled spec and the hand-written authors'-style network, at 1 and 2 threads,
then the operators that take the most self time in wirelang's step (torch.profiler).

    python benchmarks/profile_step.py                          # cifar_tiny, batch 128
    python benchmarks/profile_step.py --net mbv1_cifar_dnw --rounds 5 --threads 1
    python benchmarks/profile_step.py --device cuda            # phases synchronised on the GPU
    python benchmarks/profile_step.py --sparse-below 0.08      # the CPU rule before 2026-12-02

Every phase alternates wirelang and the hand-written network round by round (medians), as
benchmarks/speed.py does, so load from other jobs hits both alike; the shares of each phase are
the figures to read on a loaded machine, the milliseconds say how loaded it was.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.speed import TRAIN, batch, load, machine, synchronize  # noqa: E402
from wirelang.backend.api import compile_network  # noqa: E402
from wirelang.backend.kernels import SPARSE_DENSITY  # noqa: E402
from wirelang.frontend import build  # noqa: E402


def phases(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """One training step as three callables sharing state: forward, backward, optimizer step."""
    model.to(x.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    box: dict[str, torch.Tensor] = {}

    def forward() -> None:
        opt.zero_grad(set_to_none=True)
        box["loss"] = F.cross_entropy(model(x), y)

    def backward() -> None:
        box.pop("loss").backward()

    def step() -> None:
        opt.step()

    return forward, backward, step


def time_phases(
    models: dict[str, torch.nn.Module], size: int, rounds: int, device: torch.device
) -> dict:
    x, y = batch(size, device)
    fns = {name: phases(m, x, y) for name, m in models.items()}
    for f, b, s in fns.values():  # warm-up: allocator, caches, first top-k
        f(), b(), s()
    times = {name: {"forward": [], "backward": [], "optimizer": []} for name in models}
    for _ in range(rounds):
        for name, (f, b, s) in fns.items():
            for phase, fn in zip(("forward", "backward", "optimizer"), (f, b, s), strict=True):
                t = time.perf_counter()
                fn()
                synchronize(device)
                times[name][phase].append(time.perf_counter() - t)
    return {
        name: {phase: 1e3 * statistics.median(v) for phase, v in per.items()}
        for name, per in times.items()
    }


def top_ops(model: torch.nn.Module, size: int, rows: int, device: torch.device) -> str:
    from torch.profiler import ProfilerActivity, profile

    x, y = batch(size, device)
    f, b, s = phases(model, x, y)
    f(), b(), s()
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            f(), b(), s()
        synchronize(device)
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--net", default="cifar_tiny", choices=[n for n, _, _ in TRAIN])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--ops", type=int, default=15, help="rows of the operator table (0: none)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (or cuda:N)")
    p.add_argument(
        "--sparse-below",
        type=float,
        default=None,
        help="density below which edge products run sparse on the device (default: the "
        "recorded table, wirelang.backend.kernels.SPARSE_DENSITY); 0: always dense",
    )
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.sparse_below is not None:
        SPARSE_DENSITY[device.type] = args.sparse_below
    _, spec, hand_cls = next(t for t in TRAIN if t[0] == args.net)
    print(
        f"# {machine(device)}; load {load()}; {args.net}, batch {args.batch}, "
        f"{args.rounds} rounds, device {device}, sparse below "
        f"{SPARSE_DENSITY.get(device.type, 0.0)}"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        models = {"wirelang": compile_network(build(ROOT / spec)), "hand-written": hand_cls()}
        res = time_phases(models, args.batch, args.rounds, device)
        print(f"\n{threads} thread(s), ms per step (share of the step):")
        print("| network | forward | backward | optimizer | step |")
        print("|---|---:|---:|---:|---:|")
        for name, per in res.items():
            total = sum(per.values())
            cells = " | ".join(f"{v:.0f} ({100 * v / total:.0f}%)" for v in per.values())
            print(f"| {name} | {cells} | {total:.0f} |")
        w, h = (sum(res[n].values()) for n in ("wirelang", "hand-written"))
        print(f"speedup {h / w:.2f}x (hand-written / wirelang step); load {load()}")
        if args.ops:
            print(f"\nwirelang, {threads} thread(s), operators by self CPU time (3 steps):")
            print(top_ops(models["wirelang"], args.batch, args.ops, device))


if __name__ == "__main__":
    main()
