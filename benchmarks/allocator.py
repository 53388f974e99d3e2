"""How much of an inference pass on the CPU is glibc's page faults, and which kernels pay them.

glibc's malloc gives a large block fresh pages from the kernel and hands them back when it is
freed; a forward pass that allocates its large intermediate tensors anew then pays a page fault
per 4 KB touched. This runs the same measurements twice, in two child processes: with glibc's
defaults, and with `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` set so that freed memory
stays mapped (what jemalloc or tcmalloc do by design):

- the quick start's masked model and its compact export at batch 1 to 256;
- a node set's depthwise 3x3 conv on wirelang's (C, N, H, W) states (one conv with C*N groups,
  `benchmarks/depthwise_layout.py`'s `cn_groups`) against the same maps channels-last.

    python benchmarks/allocator.py              # 1 thread, 7 alternating rounds of 20 calls

Prints one line per figure and allocator; milliseconds per call (median of the rounds).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEPT = {"MALLOC_MMAP_THRESHOLD_": "1000000000", "MALLOC_TRIM_THRESHOLD_": "1000000000"}
BATCHES = (1, 4, 16, 64, 256)
# (channels, batch, side): the quick start's sets at batch 64, MobileNet-DNW's stage 4 and
# stage 2 at batch 8
DEPTHWISE = [(64, 64, 7), (512, 8, 14), (128, 8, 56)]


def per_call(fn, calls: int) -> float:
    """Milliseconds per call over `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return 1e3 * (time.perf_counter() - start) / calls


def measure(rounds: int, calls: int) -> None:
    import statistics

    import torch
    import torch.nn.functional as F

    from benchmarks.depthwise_layout import cn_groups
    from wirelang.backend.api import compile_network
    from wirelang.export.compact import plan_network
    from wirelang.export.standalone import instantiate
    from wirelang.frontend import build

    torch.set_num_threads(1)
    torch.manual_seed(0)
    label = "memory kept" if os.environ.get("MALLOC_TRIM_THRESHOLD_") else "glibc defaults"
    net = build(ROOT / "specs" / "quickstart.wire")
    masked = compile_network(net).eval()
    compact = instantiate(plan_network(net, masked)).eval()

    def alternate(fns: dict) -> dict[str, float]:
        for f in fns.values():  # warm-up
            per_call(f, 3)
        times: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(rounds):
            for k, f in fns.items():
                times[k].append(per_call(f, calls))
        return {k: statistics.median(v) for k, v in times.items()}

    with torch.inference_mode():
        for size in BATCHES:
            x = torch.randn(size, 1, 28, 28)
            t = alternate({"masked": lambda x=x: masked(x), "compact": lambda x=x: compact(x)})
            print(
                f"{label}: quick start batch {size}: masked {t['masked']:.2f} ms, compact "
                f"{t['compact']:.2f} ms, compact/masked {t['masked'] / t['compact']:.2f}x",
                flush=True,
            )
        for c, n, side in DEPTHWISE:
            x = torch.randn(c, n, side, side)
            w = torch.randn(c, 1, 3, 3)
            last = x.transpose(0, 1).contiguous(memory_format=torch.channels_last)
            t = alternate(
                {
                    "grouped": lambda x=x, w=w: cn_groups(x, w),
                    "channels_last": lambda last=last, w=w, c=c: F.conv2d(
                        last, w, None, 1, 1, 1, c
                    ),
                }
            )
            print(
                f"{label}: depthwise 3x3, {c} channels, batch {n}, {side} x {side}: (C, N, H, W) "
                f"grouped {t['grouped']:.3f} ms, channels-last {t['channels_last']:.3f} ms",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    p.add_argument("--calls", type=int, default=20, help="calls per round (default 20)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        measure(args.rounds, args.calls)
        return
    base = {k: v for k, v in os.environ.items() if k not in KEPT}
    for env in (base, {**base, **KEPT}):
        cmd = [sys.executable, __file__, "--child", "--rounds", str(args.rounds)]
        subprocess.run([*cmd, "--calls", str(args.calls)], env=env, check=True)


if __name__ == "__main__":
    main()
