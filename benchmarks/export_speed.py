"""Speed of the compact export: compact vs masked vs a dense network of the same live size.

    python benchmarks/export_speed.py                      # quick start + mbv1_dnw, batch 1 and 64
    python benchmarks/export_speed.py --only quickstart --rounds 5
    python benchmarks/export_speed.py --run runs/quickstart   # a trained run instead of a spec
    python benchmarks/export_speed.py --thresholds         # the product-form sweep behind
                                                           # compact.SPARSE_BELOW
    python benchmarks/export_speed.py --clock cpu          # CPU time per call (a loaded machine)

One thread (`torch.set_num_threads(1)`), the variants interleaved round by round (A, B, C, A,
B, C, ...) and medians taken (and 10th percentiles; batch 1 runs ten times the rounds), so
that a machine busy with other work slows them alike: the ratios are the figures to read. Printed per network and batch: live multiply-adds per image
(the compact model's count: only weights that are not zero), latency of the masked model
(compiled spec, eval), the compact model (Python, `wirelang.export.compact`), its pt2 program
(`torch.export`, loaded back) and the dense network, and compact/masked.

Specs are measured with their initial wiring (untrained weights: DNW's top k of random
weights, so few nodes are dead; a trained run usually has more dead nodes and is faster).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.speed import load, machine  # noqa: E402
from wirelang.backend.api import compile_network  # noqa: E402
from wirelang.export.compact import plan_network  # noqa: E402
from wirelang.export.programs import export_pt2  # noqa: E402
from wirelang.export.standalone import instantiate  # noqa: E402
from wirelang.frontend import build  # noqa: E402

# The quick start with its graph replaced by dense layers of about the same live size: five
# 1x1 convolutions 32 -> 34 -> 34 -> 34 -> 34 -> 64 (6,732 weights; the graph keeps 6,553
# edges), each set's operator (batchnorm, relu, dwconv) between them as in the graph.
DENSE_QUICKSTART = """\
network quickstart_dense {
  input image(1, 28, 28)
  classes 10
  stem {
    conv(16, k=3, stride=2), batchnorm, relu
    conv(32, k=3, stride=2), batchnorm
  }
  layers body {
    batchnorm, relu, dwconv(k=3)
    conv(34, k=1), batchnorm, relu, dwconv(k=3)
    conv(34, k=1), batchnorm, relu, dwconv(k=3)
    conv(34, k=1), batchnorm, relu, dwconv(k=3)
    conv(34, k=1), batchnorm, relu, dwconv(k=3)
    conv(64, k=1)
  }
  head {
    avgpool, linear(classes)
  }
}
"""

NETWORKS = {
    # name: (spec, dense network of about the same live size: spec path or text)
    "quickstart": ("specs/quickstart.wire", DENSE_QUICKSTART),
    "mbv1_dnw": ("specs/mbv1_dnw.wire", "specs/mbv1_x25.wire"),
}


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = CLOCKS["wall"]


def interleaved(
    fns: dict[str, Callable[[], object]], rounds: int, fastest: dict[str, float] | None = None
) -> dict[str, float]:
    """Median seconds per call, the calls interleaved round by round (one warm-up round).
    `fastest` receives each one's 10th percentile: on a loaded machine a call of a few
    milliseconds is either not preempted or loses a whole time slice, and the median then
    says which happened more often; the low percentile is the undisturbed time. With
    `--clock cpu` the time is the thread's CPU time, which a preemption does not add to."""
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            t = clock()
            f()
            times[k].append(clock() - t)
    if fastest is not None:
        fastest.update({k: sorted(v)[len(v) // 10] for k, v in times.items()})
    return {k: statistics.median(v) for k, v in times.items()}


def macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2 // x.shape[0]


def bench_network(name: str, batches: list[int], rounds: int, run: Path | None) -> None:
    spec, dense_spec = NETWORKS[name]
    torch.manual_seed(0)
    if run is not None:
        from wirelang.runs.load import load_run

        loaded = load_run(run)
        net, masked = loaded.net, loaded.model
    else:
        net = build(ROOT / spec)
        masked = compile_network(net).eval()
    if "\n" in dense_spec:  # spec text: built as if it were a file of the repository
        dense_net = build(ROOT / "benchmarks" / "dense.wire", text=dense_spec)
    else:
        dense_net = build(ROOT / dense_spec)
    dense = compile_network(dense_net).eval()
    plan = plan_network(net, masked)
    compact = instantiate(plan)
    shape = plan.input
    with tempfile.TemporaryDirectory() as tmp:
        export_pt2(compact, torch.randn(2, *shape), Path(tmp) / "m.pt2")
        program = torch.export.load(str(Path(tmp) / "m.pt2")).module()
    forms = [g.forms() for g in plan.graphs]
    x1 = torch.randn(1, *shape)
    live = plan.macs(macs(compact, x1))["macs_live"]
    print(
        f"{name}: live multiply-adds per image: compact {live / 1e6:.2f} M, "
        f"dense network {macs(dense, x1) / 1e6:.2f} M; edge products: "
        f"{sum(f['sparse_blocks'] for f in forms)} gathered blocks, "
        f"{sum(f['dense_blocks'] for f in forms)} dense blocks",
        flush=True,
    )
    for batch in batches:
        x = torch.randn(batch, *shape)
        with torch.no_grad():
            diff = float((compact(x) - masked(x)).abs().max())
        models = {"masked": masked, "compact": compact, "pt2": program, "dense": dense}
        low: dict[str, float] = {}
        with torch.inference_mode():
            fns = {k: (lambda m=m, x=x: m(x)) for k, m in models.items()}
            t = interleaved(fns, rounds if batch > 1 else 10 * rounds, low)
        for label, v in (("median", t), ("10th percentile", low)):
            print(
                f"  batch {batch}, {label}: masked {1e3 * v['masked']:.1f} ms, compact {1e3 * v['compact']:.1f} ms, "
                f"pt2 {1e3 * v['pt2']:.1f} ms, dense {1e3 * v['dense']:.1f} ms; "
                f"compact vs masked {v['masked'] / v['compact']:.2f}x, pt2 vs masked {v['masked'] / v['pt2']:.2f}x, "
                f"compact vs dense {v['dense'] / v['compact']:.2f}x",
                flush=True,
            )
        print(f"  batch {batch}: largest difference compact - masked {diff:.1e}", flush=True)


def bench_thresholds(rounds: int) -> None:
    """Dense product vs gathered (embedding_bag) vs torch's CSR product of one weight block,
    over densities, on (rows x cols) blocks and maps of N x H x W: the break-even density."""
    torch.manual_seed(0)
    shapes = [(512, 1024, 196), (512, 2560, 196), (256, 256, 784), (512, 512, 64 * 196)]
    for rows, cols, maps in shapes:
        x = torch.randn(cols, maps)
        line = []
        for density in (0.05, 0.1, 0.2, 0.3, 0.5):
            w = torch.randn(rows, cols) * (torch.rand(rows, cols) < density)
            csr = w.to_sparse_csr()
            col, val = csr.col_indices().clone(), csr.values().clone()
            off = csr.crow_indices()[:-1].clone()
            t = interleaved(
                {
                    "dense": lambda w=w, x=x: w @ x,
                    "gathered": lambda c=col, o=off, v=val, x=x: F.embedding_bag(
                        c, x, o, mode="sum", per_sample_weights=v
                    ),
                    "csr": lambda c=csr, x=x: c @ x,
                },
                rounds,
            )
            line.append(
                f"{density:.0%}: dense/gathered {t['dense'] / t['gathered']:.2f}x, "
                f"dense/csr {t['dense'] / t['csr']:.2f}x"
            )
        print(f"block {rows}x{cols}, {maps} map positions: " + "; ".join(line), flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated networks (default all)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--batches", default="1,64", help="batch sizes (default 1,64)")
    p.add_argument("--run", type=Path, default=None, help="a trained run of the --only network")
    p.add_argument("--thresholds", action="store_true", help="the product-form sweep only")
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time (default); cpu: the thread's CPU time, for a loaded machine",
    )
    args = p.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    import warnings

    warnings.simplefilter("ignore", UserWarning)  # torch calls its CSR tensors beta
    torch.set_num_threads(1)
    print(f"machine: {machine()}")
    print(
        f"load average at start: {load()}; {args.rounds} interleaved rounds; {args.clock} clock",
        flush=True,
    )
    if args.thresholds:
        bench_thresholds(args.rounds)
    else:
        only = [s for s in args.only.split(",") if s] or list(NETWORKS)
        batches = [int(b) for b in args.batches.split(",")]
        for name in only:
            bench_network(name, batches, args.rounds, args.run)
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
