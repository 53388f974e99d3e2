"""The paper's comparison of wiring methods, on Fashion-MNIST: MobileNetV1 whose pointwise
convolutions are learned wirings with the edge count of MobileNetV1 x0.225, trained with each
method of the paper's CIFAR-10 table (DNW, no update rule, random graph, L1 + anneal, targeted
dropout, lottery ticket, fine tune, the complete graph) and the dense MobileNetV1 x0.25.

    python benchmarks/methods_fmnist.py                         # every method, seed 0
    python benchmarks/methods_fmnist.py --methods dnw random --seeds 0 1 --threads 1
    python benchmarks/methods_fmnist.py --table-only            # rebuild the table only

Each run is `wirelang train benchmarks/specs/mbv1_fmnist_<method>.wire` with the schedule below
(the specs differ in the wiring method only: benchmarks/specs/lib/mbv1_fmnist.wire). One JSON
per finished run goes to benchmarks/results/methods/<method>-seed<seed>-<confighash>.json; a run
whose file exists is skipped and an unfinished one resumes (`--resume`), so the table accumulates
across sessions. The table, benchmarks/results/methods_fmnist.md, is rebuilt after every run.

Reduced schedule (a CPU session cannot train 160 epochs of MobileNet): the first SUBSET images of
the seeded training permutation, EPOCHS epochs at batch 128 with a per-step cosine from lr 0.1,
SGD momentum 0.9, weight decay 1e-4, random crop and flip; test top-1 on all 10,000 test images.
The two-phase methods (lottery ticket, fine tune) train the complete graph for EPOCHS epochs and
then the fixed graph for EPOCHS more, as in the paper, where they get the second phase on top.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from reproduce_fmnist import (
    REPO,
    RESULTS,
    code_version,
    meaning_hash,
    test_subset_root,
    write_json_atomic,
)

RUNS = RESULTS / "methods"
TABLE = RESULTS / "methods_fmnist.md"
RUN_ROOT = Path("/tmp/wirelang-runs/methods")

SUBSET = 8192
EPOCHS = 3
BATCH = 128
SCHEDULE = "cosine"
DATA = f"fashion_mnist(subset={SUBSET}, val=0)"

# (spec suffix, the paper's row name, the paper's CIFAR-10 accuracy), in the paper's table order;
# the complete graph and fine tune are methods of the paper without a row in that table.
METHODS: list[tuple[str, str, str]] = [
    ("x25", "MobileNetV1 (x0.25), dense", "86.3 +- 0.2"),
    ("random", "Random graph (x0.225)", "87.2 +- 0.1"),
    ("no_update", "No update rule", "86.7 +- 0.5"),
    ("l1_anneal", "L1 + anneal", "84.3 +- 0.6"),
    ("targeted_dropout", "Targeted dropout rho=0.95", "89.2 +- 0.4"),
    ("lottery", "Lottery ticket (one shot)", "87.9 +- 0.3"),
    ("dnw", "DNW (x0.225)", "89.7 +- 0.2"),
    ("complete", "Complete graph (every candidate edge)", "-"),
    ("fine_tune", "Fine tune (complete, then the top-k fixed)", "-"),
]
NAMES = [m for m, _, _ in METHODS]


def spec_of(method: str) -> str:
    return f"benchmarks/specs/mbv1_fmnist_{method}.wire"


def config_hash(method: str) -> str:
    config = {
        "data": DATA,
        "epochs": EPOCHS,
        "batch": BATCH,
        "schedule": SCHEDULE,
        "test_images": 10000,
        "meaning": meaning_hash(spec_of(method), DATA, SCHEDULE, EPOCHS, BATCH),
    }
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def run_one(method: str, seed: int, chash: str, threads: int) -> dict:
    spec = spec_of(method)
    root = test_subset_root(10000)
    run_dir = RUN_ROOT / f"{method}-seed{seed}-{chash}"
    fresh = [
        sys.executable,
        "-m",
        "wirelang",
        "train",
        spec,
        "--seed",
        str(seed),
        "--epochs",
        str(EPOCHS),
        "--batch-size",
        str(BATCH),
        "--set",
        f"data={DATA}",
        "--set",
        f"schedule={SCHEDULE}",
        "--data-root",
        str(root),
        "--threads",
        str(threads),
        "--out",
        str(run_dir),
    ]
    if (run_dir / "config.json").exists():
        cmd = [sys.executable, "-m", "wirelang", "train", "--resume", str(run_dir)]
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # our own half-created directory
        cmd = fresh
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print(f"[{time.strftime('%H:%M:%S')}] {method} seed {seed}: {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wall = time.perf_counter() - t0
    (RUN_ROOT / f"{run_dir.name}.log").write_text(proc.stdout)
    metrics = run_dir / "metrics.jsonl"
    records = (
        [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        if metrics.exists()
        else []
    )
    if proc.returncode != 0 or not records or "test_top1" not in records[-1]:
        tail = "\n".join(proc.stdout.strip().splitlines()[-5:])
        raise RuntimeError(f"{spec} seed {seed} failed (exit {proc.returncode}):\n{tail}")
    last = records[-1]
    return {
        "method": method,
        "spec": spec,
        "seed": seed,
        "config_hash": chash,
        "data": DATA,
        "epochs_per_phase": EPOCHS,
        "batch": BATCH,
        "schedule": SCHEDULE,
        "test_top1": last["test_top1"],
        "test_images": 10000,
        "train_top1": last["train_top1"],
        "epochs": len(records),
        "edges_swapped": [r.get("edges_swapped", {}) for r in records],
        "epoch_time_s": [round(r["time_s"], 1) for r in records],
        "wall_time_s": round(wall, 1),
        "command": shlex.join([f"OMP_NUM_THREADS={threads}", "wirelang"] + fresh[3:]),
        "code": code_version(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _mean_std(xs: list[float]) -> str:
    m = 100 * statistics.mean(xs)
    return f"{m:.2f} +- {100 * statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{m:.2f}"


def build_table() -> str:
    results = [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]
    current = {m: config_hash(m) for m in NAMES}
    rows = {
        m: [r for r in results if r["method"] == m and r["config_hash"] == current[m]]
        for m in NAMES
    }
    means = {m: statistics.mean(r["test_top1"] for r in rs) for m, rs in rows.items() if rs}
    ours_rank = {m: i + 1 for i, m in enumerate(sorted(means, key=means.get, reverse=True))}
    paper = {m: float(p.split()[0]) for m, _, p in METHODS if p != "-"}
    paper_rank = {m: i + 1 for i, m in enumerate(sorted(paper, key=paper.get, reverse=True))}
    lines = [
        "# Wiring methods on Fashion-MNIST: MobileNetV1 with x0.225 of its pointwise edges",
        "",
        "Written by `benchmarks/methods_fmnist.py` from `benchmarks/results/methods/*.json` "
        "(rebuild: `--table-only`). The paper's CIFAR-10 table (160 epochs) beside a **reduced "
        f"schedule on Fashion-MNIST**: `{DATA}` ({SUBSET:,} training images), {EPOCHS} epochs per "
        f"phase at batch {BATCH} ({SUBSET // BATCH * EPOCHS} steps), per-step cosine from lr 0.1, SGD "
        "momentum 0.9, weight decay 1e-4; test top-1 on all 10,000 test images (binomial standard "
        "error ~0.3 points per run). Every network: `benchmarks/specs/mbv1_fmnist_<method>.wire`, "
        "the same MobileNetV1 body (first conv at stride 1, five wired stages) and head; the "
        "methods differ in the wiring alone. Two-phase methods (lottery, fine tune) train twice "
        "as many epochs (complete graph, then the fixed top-k).",
        "",
        "| method | seeds | test top-1 (%) | rank here | paper, CIFAR-10 | paper rank "
        "| edges swapped per epoch (seed 0) | wall time / run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, name, p in METHODS:
        rs = sorted(rows[m], key=lambda r: r["seed"])
        if not rs:
            lines.append(f"| {name} | 0 | not run yet | | {p} | {paper_rank.get(m, '-')} | | |")
            continue
        swaps = [sum(e.values()) for e in rs[0]["edges_swapped"]]
        wall = statistics.mean(r["wall_time_s"] for r in rs)
        lines.append(
            f"| {name} | {len(rs)} ({', '.join(str(r['seed']) for r in rs)}) "
            f"| {_mean_std([r['test_top1'] for r in rs])} | {ours_rank[m]} | {p} "
            f"| {paper_rank.get(m, '-')} | {swaps if any(swaps) else 0} | {wall:.0f} s |"
        )
    both = [m for m in paper if m in means]
    if len(both) >= 3:
        # Spearman's rank correlation between the paper's order and ours, over the rows both have.
        a = sorted(both, key=paper.get, reverse=True)
        b = sorted(both, key=means.get, reverse=True)
        d2 = sum((a.index(m) - b.index(m)) ** 2 for m in both)
        n = len(both)
        rho = 1 - 6 * d2 / (n * (n * n - 1))
        lines += [
            "",
            f"Order agreement with the paper over the {n} methods both tables have: Spearman's "
            f"rho = {rho:+.2f} (+1: the same order).",
        ]
    lines += [
        "",
        "Command per run: the `command` field of each JSON file.",
    ]
    old = TABLE.read_text(encoding="utf-8") if TABLE.exists() else ""
    if "## Findings" in old:
        lines += ["", "## Findings" + old.split("## Findings", 1)[1].rstrip("\n")]
    return "\n".join(lines) + "\n"


def write_table() -> None:
    TABLE.write_text(build_table(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=NAMES, choices=NAMES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--threads", type=int, default=2, help="1 when two jobs share 2 cores")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args(argv)
    RUNS.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        write_table()
        print(TABLE.read_text())
        return 0
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    failures = 0
    for seed in args.seeds:
        for method in [m for m in NAMES if m in args.methods]:
            chash = config_hash(method)
            out = RUNS / f"{method}-seed{seed}-{chash}.json"
            if out.exists():
                print(f"skip {out.name} (exists)")
                continue
            try:
                result = run_one(method, seed, chash, args.threads)
            except RuntimeError as err:
                failures += 1
                print(f"FAILED: {err}", flush=True)
                continue
            write_json_atomic(out, result)
            print(
                f"  -> test {100 * result['test_top1']:.2f}%, {result['wall_time_s']:.0f} s",
                flush=True,
            )
            write_table()
    write_table()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
