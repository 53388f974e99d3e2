"""Compile-time benchmarks: `wirelang check`, build and compile of every shipped spec, and how
time and memory grow with the number of candidate edges.

    python benchmarks/compile_time.py            # everything (a few minutes)
    python benchmarks/compile_time.py --quick    # 3 specs, family up to 10^5, 1 repetition

Tables printed:
1. per shipped spec: `wirelang check` wall time (the whole process, in a subprocess; median of
   `--reps`), in-process `build` (parse + checks -> IR) and `compile_network` (IR -> nn.Module)
   times, torch already imported;
2. a generated family of specs, one static graph a[n] -> b[n] with n^2 candidate edges from
   10^3 to 10^7: build time and its peak Python memory (tracemalloc), compile time and its
   peak torch allocations (profiler memory events, a fresh subprocess per size), the model's
   tensor bytes and the RSS growth, and time per million candidates;
3. `--sweep`: the front end against the size of the spec text, 10 KB to 4 MB, for two kinds of
   text: a network of many `let`s, and a frozen export (`wirelang export RUN --format wire`) of
   MobileNetV1-DNW x0.225 with more or fewer learned edges. Per size, in a fresh process: CPU
   seconds of `build` (parse, expand, checks) and of a whole `wirelang check` process, MB/s,
   the peak Python heap of the build (tracemalloc) and the growth of the maximum RSS.

    python benchmarks/compile_time.py --sweep-only   # the text-size sweep alone (a minute)

4. `--hostile`: `wirelang check` of 4 MB texts dense in tokens that the fast path for bulk lines
   leaves to lark (commented `let`s, one long stem line), one `let` list of two million
   tokens on one line, and 30,000 bulk `let`s followed by a syntax error (lark alone used to
   read them all again, then once more per further error). Per text, in a fresh process: the
   exit code, the first line of the output, CPU seconds and the maximum RSS. `--tree DIR`
   runs another checkout's wirelang (a before/after comparison); `--timeout S` ends a case.

    python benchmarks/compile_time.py --hostile [--tree DIR] [--timeout 120]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAMILY = """network gen_{n} {{
  input image(1, 4, 4)
  classes 2
  stem {{
    conv({n}, k=1)
  }}
  graph g {{
    nodes a[{n}] input op(batchnorm, relu)
    nodes b[{n}] output
    edges forward(a, b)
    budget 10%
    wiring dnw
  }}
  head {{
    avgpool, linear(classes)
  }}
}}
"""

# Peak RSS growth of compiling one spec, measured in a fresh process (torch imported first).
_COMPILE_CHILD = r"""
import json, os, sys, time
import torch
from torch.profiler import ProfilerActivity, profile
from wirelang.frontend import build
from wirelang.backend.api import compile_network

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

net = build(sys.argv[1])
compile_network(build(sys.argv[1]))  # warm: first-use costs of torch are not the compiler's
before = rss()
t = time.perf_counter()
model = compile_network(net)
dt = time.perf_counter() - t
grown = rss() - before
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    compile_network(net)
level = peak = 0
for e in sorted(prof.events(), key=lambda e: e.time_range.start):
    level += e.self_cpu_memory_usage
    peak = max(peak, level)
tensors = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
print(json.dumps({"compile_s": dt, "rss_mib": grown / 2**20, "peak_mib": peak / 2**20, "tensor_mib": tensors / 2**20}))
"""


def check_wall(spec: Path, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "wirelang", "check", str(spec)],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def in_process(spec: Path, reps: int) -> tuple[float, float, int]:
    from wirelang.backend.api import compile_network
    from wirelang.frontend import build

    builds, compiles = [], []
    for _ in range(reps):
        t = time.perf_counter()
        net = build(spec)
        builds.append(time.perf_counter() - t)
        t = time.perf_counter()
        compile_network(net)
        compiles.append(time.perf_counter() - t)
    return (
        statistics.median(builds),
        statistics.median(compiles),
        sum(g.candidates for g in net.graphs()),
    )


def shipped(reps: int, quick: bool) -> None:
    import torch  # noqa: F401  (imported once, outside every measurement)

    specs = sorted((ROOT / "specs").glob("*.wire"))
    if quick:
        specs = [
            s for s in specs if s.stem in ("cifar_tiny", "mbv1_cifar_dnw", "resnet50_sparse_all10")
        ]
    print("| spec | graph candidates | `wirelang check` wall (s) | build (s) | compile (s) |")
    print("|---|---:|---:|---:|---:|")
    worst = {"check": (0.0, ""), "compile": (0.0, "")}
    for spec in specs:
        wall = check_wall(spec.relative_to(ROOT), reps)
        b, c, cand = in_process(spec, reps)
        worst["check"] = max(worst["check"], (wall, spec.stem))
        worst["compile"] = max(worst["compile"], (c, spec.stem))
        print(f"| {spec.stem} | {cand:,} | {wall:.2f} | {b:.3f} | {c:.3f} |", flush=True)
    print(
        f"\nslowest check: {worst['check'][1]} {worst['check'][0]:.2f} s wall; "
        f"slowest compile: {worst['compile'][1]} {worst['compile'][0]:.2f} s in-process\n"
    )


def family(max_exp: int) -> None:
    from wirelang.frontend import build

    print(
        "| candidates | build (s) | build peak (MiB, tracemalloc) | compile (s) | compile peak torch allocations (MiB) "
        "| model tensors (MiB) | RSS growth (MiB) | build s per 10^6 | compile s per 10^6 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for e in range(3, max_exp + 1):
            n = round(math.sqrt(10**e))
            path = Path(tmp) / f"gen_{e}.wire"
            path.write_text(FAMILY.format(n=n))
            t = time.perf_counter()
            net = build(path)
            b = time.perf_counter() - t
            tracemalloc.start()
            build(path)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            cand = net.graphs()[0].candidates
            out = subprocess.run(
                [sys.executable, "-c", _COMPILE_CHILD, str(path)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            per = 1e6 / cand
            print(
                f"| {cand:,} | {b:.3f} | {peak / 2**20:.2f} | {r['compile_s']:.3f} | {r['peak_mib']:.1f} "
                f"| {r['tensor_mib']:.1f} | {r['rss_mib']:.1f} | {b * per:.4f} | {r['compile_s'] * per:.4f} |",
                flush=True,
            )


# Build one spec in a fresh process: CPU seconds (the machine may be shared: wall time would
# measure the other jobs too), then the peak Python heap in a second build under tracemalloc,
# and the growth of the maximum RSS over the process after its imports.
_SWEEP_CHILD = r"""
import json, resource, sys, time, tracemalloc
from wirelang.frontend import build
from wirelang.syntax.grammar import parser

parser()  # the LALR tables, loaded once per process from lark's cache
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.process_time()
net = build(sys.argv[1])
cpu = time.process_time() - t
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
tracemalloc.start()
build(sys.argv[1])
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
edges = sum(len(g.wiring.fixed or ()) for g in net.graphs())
print(json.dumps({"cpu": cpu, "heap": peak, "rss": grown * 1024, "edges": edges}))
"""

SWEEP_SIZES = (10_000, 100_000, 300_000, 1_000_000, 2_000_000, 4_000_000)


def lets_text(size: int) -> str:
    """A network of `let`s, each reading the one before: `let v12 = v11 + 5 * 2 - 1`."""
    lines = ["network lets {", "  input image(3, 32, 32)", "  classes 10", "  let v0 = 1"]
    total, i = 0, 1
    while total < size:
        lines.append(f"  let v{i} = v{i - 1} + {i % 97} * 2 - 1")
        total += len(lines[-1]) + 1
        i += 1
    lines += ["  stem {", "    conv(16, k=3)", "  }", "  head {", "    avgpool, linear(classes)"]
    return "\n".join([*lines, "  }", "}", ""])


def frozen_text(size: int) -> str:
    """A frozen export of MobileNetV1-DNW x0.225 (specs/mbv1_dnw.wire) whose graphs keep a
    random set of candidate edges, as many as make the text about `size` bytes. Printed by the
    exporter's own printer (`wirelang/export/frozen.py`), given edges instead of a trained
    model, which a torch-free benchmark has not got."""
    import random

    from wirelang.export import frozen
    from wirelang.frontend import build

    net = build(ROOT / "specs" / "mbv1_dnw.wire")
    budget = sum(g.budget.k for g in net.graphs())
    # about 5.3 bytes per edge once a source's targets share a line, 5 KB for the rest
    rng, fraction = random.Random(0), max(size - 5_000, 500) / 5.3 / budget
    edges = {}
    for g in net.graphs():
        sizes = {s.name: s.size for s in g.sets}
        order = {s.name: i for i, s in enumerate(g.sets)}
        chosen: list[tuple[str, int, str, int, float]] = []
        for b in g.blocks:
            n_src, n_dst = sizes[b.source], sizes[b.target]
            want = min(
                n_src * n_dst, max(1, round(g.budget.k * fraction * n_src * n_dst / g.candidates))
            )
            picks = rng.sample(range(n_src * n_dst), want)
            chosen += [(b.source, p // n_dst, b.target, p % n_dst, 1.0) for p in picks]
        chosen.sort(key=lambda e: (order[e[0]], e[1], order[e[2]], e[3]))
        edges[g.name] = chosen
    # the frozen exporter's printer, given the edges instead of a trained model
    return frozen.network_text(net, frozen.IRPrinter(None, edges), [], [], net.train)


def sweep(sizes: tuple[int, ...]) -> None:
    import os
    import resource

    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average before the sweep: {load}\n")
    print(
        "| text | size (KB) | fixed edges | build CPU (s) | build MB/s | `wirelang check` CPU (s) "
        "| check MB/s | peak heap (MiB, tracemalloc) | max RSS growth (MiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for kind, make in (("lets", lets_text), ("frozen", frozen_text)):
            for size in sizes:
                path = Path(tmp) / f"{kind}_{size}.wire"
                path.write_text(make(size), encoding="utf-8")
                mb = path.stat().st_size / 1e6
                out = subprocess.run(
                    [sys.executable, "-c", _SWEEP_CHILD, str(path)],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                subprocess.run(
                    [sys.executable, "-m", "wirelang", "check", str(path)],
                    cwd=ROOT,
                    capture_output=True,
                    check=True,
                    env={**os.environ, "OMP_NUM_THREADS": "1"},
                )
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                check = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                print(
                    f"| {kind} | {mb * 1000:,.0f} | {r['edges']:,} | {r['cpu']:.3f} "
                    f"| {mb / r['cpu']:.2f} | {check:.2f} | {mb / check:.2f} "
                    f"| {r['heap'] / 2**20:.1f} | {r['rss'] / 2**20:.1f} |",
                    flush=True,
                )


HOSTILE_NET = """network n {
  input image(1, 6, 6)
  classes 2
  stem {
    conv(4, k=3)
  }
  head {
    avgpool, linear(classes)
  }
}
"""


def hostile_texts() -> dict[str, str]:
    """About 4 MB each of text dense in tokens (see the module's docstring, table 4)."""
    return {
        "commented lets (lark)": "".join(f"let a{i} = 1 + 2 * 3  # c\n" for i in range(160_000))
        + HOSTILE_NET,
        "one stem line (lark)": HOSTILE_NET.replace(
            "conv(4, k=3)", "conv(4, k=3), " + "relu, " * 700_000 + "relu"
        ),
        "one let list (fast path)": "let xs = ["
        + ", ".join(["1"] * 1_300_000)
        + "]\n"
        + HOSTILE_NET,
        "bulk lets + a syntax error": "".join(f"let v{i} = {i} + 1\n" for i in range(30_000))
        + "let = 2\n"
        + HOSTILE_NET,
        "sweep lets, 4 MB (valid)": lets_text(4_000_000),
    }


def hostile(tree: Path, timeout: float) -> None:
    import os
    import signal

    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"wirelang from {tree}; load average before: {load}\n")
    print("| text | size (MB) | exit | first line of the output | CPU (s) | max RSS (MiB) |")
    print("|---|---:|---:|---|---:|---:|")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tree)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in hostile_texts().items():
            path = Path(tmp) / "hostile.wire"
            path.write_text(text, encoding="utf-8")
            out = Path(tmp) / "out.txt"
            with open(out, "w") as sink:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "wirelang", "check", str(path)],
                    cwd=tree,
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
                t0 = time.monotonic()
                while True:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.monotonic() - t0 > timeout:
                        proc.send_signal(signal.SIGKILL)
                        pid, status, usage = os.wait4(proc.pid, 0)
                        break
                    time.sleep(0.05)
            code = os.waitstatus_to_exitcode(status)
            first = out.read_text(errors="replace").split("\n", 1)[0].replace(tmp + "/", "")
            shown = f"killed after {timeout:.0f} s" if code == -signal.SIGKILL else first[:90]
            print(
                f"| {name} | {len(text.encode()) / 1e6:.1f} | {code} | {shown.replace('|', '/')} "
                f"| {usage.ru_utime + usage.ru_stime:.1f} | {usage.ru_maxrss / 1024:.0f} |",
                flush=True,
            )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--reps", type=int, default=None, help="repetitions per measurement (default 3, quick 1)"
    )
    p.add_argument(
        "--max-exp", type=int, default=None, help="largest family size, 10^N candidates (default 7)"
    )
    p.add_argument("--family-only", action="store_true", help="skip the shipped specs")
    p.add_argument("--sweep", action="store_true", help="also the text-size sweep (table 3)")
    p.add_argument("--sweep-only", action="store_true", help="the text-size sweep alone")
    p.add_argument("--hostile", action="store_true", help="token-dense texts alone (table 4)")
    p.add_argument("--tree", type=Path, default=ROOT, help="the checkout to run (--hostile)")
    p.add_argument("--timeout", type=float, default=120, help="seconds per case (--hostile)")
    args = p.parse_args(argv)
    if args.hostile:
        hostile(args.tree.resolve(), args.timeout)
        return
    reps = args.reps or (1 if args.quick else 3)
    sizes = SWEEP_SIZES[:3] if args.quick else SWEEP_SIZES
    if args.sweep_only:
        sweep(sizes)
        return
    if not args.family_only:
        shipped(reps, args.quick)
    family(args.max_exp or (5 if args.quick else 7))
    if args.sweep:
        sweep(sizes)


if __name__ == "__main__":
    main()
