"""Reproduce the paper's tiny-classifier table (DNW vs a random graph at the same number of edges)
on the real Fashion-MNIST, with a short schedule that fits a CPU session.

    /work/venv/bin/python benchmarks/reproduce_fmnist.py                  # all settings, seeds 0 1
    /work/venv/bin/python benchmarks/reproduce_fmnist.py --settings static --seeds 0 1 2 3
    /work/venv/bin/python benchmarks/reproduce_fmnist.py --budget-min 30  # start no run after 30 min
    /work/venv/bin/python benchmarks/reproduce_fmnist.py --table-only     # rebuild the table only

For every setting (static / discrete / continuous) and seed it trains the DNW spec and the
random-graph spec with `wirelang train` (one process, OMP_NUM_THREADS=2), in the order
static, discrete, continuous, and DNW then random for each seed, so that an interrupted session
leaves complete pairs. Each finished run writes one small JSON file

    benchmarks/results/runs/<spec>-seed<seed>-<confighash>.json

(spec, seed, schedule and settings, val/test top-1, epochs, edges swapped per epoch, nfe, wall
time, the command). A run whose file exists is skipped, so the table accumulates across sessions;
changing a setting's configuration changes its hash and starts a fresh series. The table,
benchmarks/results/fmnist.md, is rebuilt from all JSON files after every run (mean +- std over
seeds, sample std), with the paper's CIFAR-10 numbers alongside for reference.

Reduced configuration (every reduction is stated in the table's notes):
- a training subset (`data.subset`) and a held-out validation count (`data.val`) from the
  60,000 training images; a few epochs with a cosine schedule; batch 128 (the paper: 512) so
  that DNW gets a few hundred optimizer steps for edges to swap. Optimizer as in the paper (SGD
  lr 0.1, momentum 0.9, weight decay 1e-4), the dataset's default augmentation (random crop, flip).
- test top-1 on the official test file (t10k), all 10,000 images unless a setting says fewer:
  the script then writes IDX files holding the first N, with the training files linked, under
  /tmp/wirelang-runs/ and passes that folder as --data-root.
- static and discrete: the paper's networks as written (specs/fmnist_tiny*.wire: 800 nodes,
  32,000 edges). continuous: benchmarks/specs/fmnist_small_continuous*.wire, the same classifier
  at a quarter of the size (200 nodes all-to-all, 2,000 edges = 5% of 200 x 200) with fixed-step
  rk4 (step 0.25) instead of adaptive dopri5: the full network with dopri5 trains at ~6 images/s
  here. See benchmarks/specs/lib/small_cyclic.wire. continuous_long: the same with twice the
  steps; continuous_full: the paper's 800-node network with rk4 (~27 minutes per pair).

A series is keyed by what its runs compute: the settings above and each spec's meaning (its IR
without source positions, with the training config the overrides resolve), not its text.

Run directories go to /tmp/wirelang-runs/fmnist/ (never into the repository); an unfinished one
is resumed with `wirelang train --resume`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import shlex
import shutil
import statistics
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
RUNS = RESULTS / "runs"
TABLE = RESULTS / "fmnist.md"
RUN_ROOT = Path("/tmp/wirelang-runs/fmnist")
FMNIST = Path("/usr/share/datasets/fashion-mnist")

# One configuration per setting. `specs`: (DNW, random graph), identical but for the wiring.
# `subset` None and `val` 0: all 60,000 training images, no validation split.
SETTINGS: dict[str, dict] = {
    # The fidelity issue's schedule: every training image, 4 epochs (1,872 steps), cosine.
    "static_full": {
        "specs": ("specs/fmnist_tiny.wire", "specs/fmnist_tiny_random.wire"),
        "nodes": "800 nodes (DAG), 32,000 edges: the paper's network",
        "k": 32000,
        "subset": None,
        "val": 0,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    # The same, twice as long (3,744 steps): does DNW's lead grow with training, as the paper's
    # 160-epoch margin (+4.8 on CIFAR-10) suggests, where 4 epochs give +0.48?
    "static_long": {
        "specs": ("specs/fmnist_tiny.wire", "specs/fmnist_tiny_random.wire"),
        "nodes": "as static_full, twice the epochs",
        "k": 32000,
        "subset": None,
        "val": 0,
        "test": 10000,
        "batch": 128,
        "epochs": 8,
        "schedule": "cosine",
    },
    # static_full with the paper's head: the authors average a 2 x 2 patch of the output maps
    # (3 x 3 crop, 2 x 2 pool), the shipped fmnist_tiny all nine of the 3 x 3 centre. wirelang's
    # random graph scores 0.57 above the authors' at the same seeds while the two DNWs are level;
    # does the narrower head, which asks more of the graph, account for that?
    "static_head2x2": {
        "specs": (
            "benchmarks/specs/fmnist_tiny_head2x2.wire",
            "benchmarks/specs/fmnist_tiny_head2x2_random.wire",
        ),
        "nodes": "as static_full, the head averaging a 2 x 2 patch (the authors' head) instead of 3 x 3",
        "k": 32000,
        "subset": None,
        "val": 0,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    "static": {
        "specs": ("specs/fmnist_tiny.wire", "specs/fmnist_tiny_random.wire"),
        "nodes": "800 nodes (DAG), 32,000 edges: the paper's network",
        "k": 32000,
        "subset": 8192,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 6,
        "schedule": "cosine",
    },
    "discrete": {
        "specs": ("specs/fmnist_tiny_discrete.wire", "specs/fmnist_tiny_discrete_random.wire"),
        "nodes": "800 nodes all-to-all, 32,000 edges, T = 5: the paper's network",
        "k": 32000,
        "subset": 4096,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    "continuous": {
        "specs": (
            "benchmarks/specs/fmnist_small_continuous.wire",
            "benchmarks/specs/fmnist_small_continuous_random.wire",
        ),
        "nodes": "200 nodes all-to-all, 2,000 edges (quarter size), T = 1, rk4 step 0.25 (16 nfe)",
        "k": 2000,
        "subset": 4096,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    # The same continuous runs twice as long: DNW rewires 16% of its edges in the first 32 steps
    # and trails the random graph after 128 (benchmarks/results/probe_continuous.json); does the
    # learned graph catch up with more steps, as the static one does?
    "continuous_long": {
        "specs": (
            "benchmarks/specs/fmnist_small_continuous.wire",
            "benchmarks/specs/fmnist_small_continuous_random.wire",
        ),
        "nodes": "as continuous, with twice the steps",
        "k": 2000,
        "subset": 4096,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 8,
        "schedule": "cosine",
    },
    # `continuous` with the node function in the authors' order (relu -> conv -> edges -> norm,
    # the order of their ODE function): a different differential equation, not a re-cut step.
    "continuous_authors_order": {
        "specs": (
            "benchmarks/specs/fmnist_small_continuous_authors_order.wire",
            "benchmarks/specs/fmnist_small_continuous_authors_order_random.wire",
        ),
        "nodes": "as continuous, node function relu -> conv -> edges -> instance norm (the authors' order)",
        "k": 2000,
        "subset": 4096,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    # `continuous` with the output nodes sending relu -> conv of their states like every other
    # node (the paper's ODE at the hidden nodes): the difference that cost discrete-time DNW its
    # graph (session 6), isolated in continuous time.
    "continuous_outputs_send": {
        "specs": (
            "benchmarks/specs/fmnist_small_continuous_outputs_send.wire",
            "benchmarks/specs/fmnist_small_continuous_outputs_send_random.wire",
        ),
        "nodes": "as continuous, the output nodes sending relu -> conv of their states",
        "k": 2000,
        "subset": 4096,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    # Four times the steps of `discrete` and `continuous_authors_order` (512 instead of 128):
    # at 128 steps DNW trails the random graph in the authors' code too, having rewired ~92% of
    # its edges in the first 32 steps; does it overtake when the found graph has time to train?
    "discrete_long": {
        "specs": ("specs/fmnist_tiny_discrete.wire", "specs/fmnist_tiny_discrete_random.wire"),
        "nodes": "as discrete, four times the steps",
        "k": 32000,
        "subset": 16384,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    # `discrete_long` with the node function in the authors' order: their discrete DNW reached
    # 85.13 % where wirelang's reached 81.63 % (seed 0), and put 39 % of its edges between hidden
    # nodes where wirelang's put 6 % (benchmarks/edge_roles.py): the output nodes, which send
    # their states without relu and conv in `tiny_cyclic`, are the difference under test.
    "discrete_authors_order_long": {
        "specs": (
            "benchmarks/specs/fmnist_tiny_discrete_authors_order.wire",
            "benchmarks/specs/fmnist_tiny_discrete_authors_order_random.wire",
        ),
        "nodes": "as discrete_long, node function relu -> conv -> edges -> instance norm at every node (the authors' order)",
        "k": 32000,
        "subset": 16384,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    "continuous_authors_order_long": {
        "specs": (
            "benchmarks/specs/fmnist_small_continuous_authors_order.wire",
            "benchmarks/specs/fmnist_small_continuous_authors_order_random.wire",
        ),
        "nodes": "as continuous_authors_order, four times the steps",
        "k": 2000,
        "subset": 16384,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
    # The paper's continuous network (800 nodes, 32,000 edges) with fixed-step rk4: ~19 training
    # images/s here, about 27 minutes per pair.
    "continuous_full": {
        "specs": (
            "benchmarks/specs/fmnist_tiny_continuous_rk4.wire",
            "benchmarks/specs/fmnist_tiny_continuous_rk4_random.wire",
        ),
        "nodes": "800 nodes all-to-all, 32,000 edges: the paper's network, T = 1, rk4 step 0.25 (16 nfe)",
        "k": 32000,
        "subset": 4096,
        "val": 1000,
        "test": 10000,
        "batch": 128,
        "epochs": 4,
        "schedule": "cosine",
    },
}
ORDER = (
    "static_full",
    "static_long",
    "static_head2x2",
    "static",
    "discrete",
    "discrete_long",
    "discrete_authors_order_long",
    "continuous",
    "continuous_authors_order",
    "continuous_outputs_send",
    "continuous_authors_order_long",
    "continuous_long",
    "continuous_full",
)

# The paper's CIFAR-10 numbers (160 epochs, full network, dopri5): a different dataset and schedule.
PAPER_CIFAR10 = {
    ("static_full", "random"): "76.1 +- 0.5",
    ("static_full", "dnw"): "80.9 +- 0.6",
    ("static_long", "random"): "76.1 +- 0.5",
    ("static_long", "dnw"): "80.9 +- 0.6",
    ("static_head2x2", "random"): "76.1 +- 0.5",
    ("static_head2x2", "dnw"): "80.9 +- 0.6",
    ("static", "random"): "76.1 +- 0.5",
    ("static", "dnw"): "80.9 +- 0.6",
    ("discrete", "random"): "77.3 +- 0.7",
    ("discrete", "dnw"): "82.3 +- 0.6",
    ("continuous", "random"): "78.5 +- 1.2",
    ("continuous", "dnw"): "83.1 +- 0.3",
    ("continuous_authors_order", "random"): "78.5 +- 1.2",
    ("continuous_authors_order", "dnw"): "83.1 +- 0.3",
    ("continuous_outputs_send", "random"): "78.5 +- 1.2",
    ("continuous_outputs_send", "dnw"): "83.1 +- 0.3",
    ("continuous_authors_order_long", "random"): "78.5 +- 1.2",
    ("continuous_authors_order_long", "dnw"): "83.1 +- 0.3",
    ("discrete_long", "random"): "77.3 +- 0.7",
    ("discrete_authors_order_long", "random"): "77.3 +- 0.7",
    ("discrete_authors_order_long", "dnw"): "82.3 +- 0.6",
    ("discrete_long", "dnw"): "82.3 +- 0.6",
    ("continuous_long", "random"): "78.5 +- 1.2",
    ("continuous_long", "dnw"): "83.1 +- 0.3",
    ("continuous_full", "random"): "78.5 +- 1.2",
    ("continuous_full", "dnw"): "83.1 +- 0.3",
}


# ---------------------------------------------------------------------------- configuration
def data_setting(c: dict) -> str:
    """The `data` override of a setting: a subset and validation count, or every image."""
    if c["subset"] is None:
        return f"fashion_mnist(val={c['val']})"
    return f"fashion_mnist(subset={c['subset']}, val={c['val']})"


def train_images(c: dict) -> int:
    return c["subset"] if c["subset"] is not None else 60000 - c["val"]


def config_of(setting: str) -> dict:
    """What a run's result depends on (besides the seed): hashed into its file name.

    The networks enter by meaning, not by text: each spec's IR without source positions and
    with the training settings the run resolves (the spec's `train` block under this script's
    overrides). Comments, formatting, or a spec setting the overrides replace do not start a
    new series; a change to a layer, a budget, a wiring or the optimizer does.
    """
    c = SETTINGS[setting]
    return {
        "setting": setting,
        "train": {
            "data": data_setting(c),
            "batch": c["batch"],
            "epochs": c["epochs"],
            "schedule": c["schedule"],
            "optimizer": "sgd(lr=0.1, momentum=0.9, weight_decay=1e-4) (the spec's)",
        },
        "test_images": c["test"],
        "specs_meaning": {s: _meaning_hash(s, setting) for s in c["specs"]},
    }


def config_hash(setting: str) -> str:
    return hashlib.sha256(json.dumps(config_of(setting), sort_keys=True).encode()).hexdigest()[:10]


def _meaning_hash(spec: str, setting: str) -> str:
    c = SETTINGS[setting]
    return meaning_hash(spec, data_setting(c), c["schedule"], c["epochs"], c["batch"])


def meaning_hash(spec: str, data: str, schedule: str, epochs: int, batch: int) -> str:
    """sha256 of the network (IR without spans or train block) and its resolved training config
    under the overrides a run passes (`--set data=... --set schedule=... --epochs --batch-size`)."""
    from wirelang.ir.meaning import network_meaning
    from wirelang.train.runs import parse_overrides, resolve_config

    net = _build(REPO / spec)
    overrides = parse_overrides([f"data={data}", f"schedule={schedule}"])
    overrides.update({"epochs": epochs, "batch": batch})
    config = series_view(resolve_config(net, overrides))
    text = json.dumps({"network": network_meaning(net), "train": config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# The training settings the recorded series were hashed with. A setting wirelang gains later
# enters the hash only when a run moves it off its default, so adding a setting (gradient
# clipping, say) to wirelang does not orphan every recorded run; setting it starts a new series.
SERIES_KEYS = frozenset(
    {
        "amp",
        "batch",
        "channels_last",
        "checkpoint_steps",
        "compile",
        "data",
        "epochs",
        "eval_batch",
        "label_smoothing",
        "optimizer",
        "phase2",
        "schedule",
        "seed",
        "warmup",
    }
)
SERIES_DATA_KEYS = frozenset({"augment", "name", "subset", "val", "workers", "size"})


def series_view(config) -> dict:
    """A resolved TrainConfig as the series hash sees it (see SERIES_KEYS); `data.root`, where
    the files are, is not what the run computes."""

    def later_defaults(model, keys: frozenset[str]) -> list[str]:
        fields = type(model).model_fields
        return [
            k
            for k in fields
            if k not in keys
            and getattr(model, k) == fields[k].get_default(call_default_factory=True)
        ]

    out = config.model_dump(mode="json", exclude=set(later_defaults(config, SERIES_KEYS)))
    data_drop = set(later_defaults(config.data, SERIES_DATA_KEYS)) | {"root"}
    out["data"] = {k: v for k, v in out["data"].items() if k not in data_drop}
    return out


def _build(path: Path):
    from wirelang.frontend import build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build(path)


def result_path(spec: str, seed: int, chash: str) -> Path:
    return RUNS / f"{Path(spec).stem}-seed{seed}-{chash}.json"


# ---------------------------------------------------------------------------- data root
def test_subset_root(n: int) -> Path:
    """A data root with the full training files and the first `n` test images and labels."""
    root = Path(f"/tmp/wirelang-runs/fashion-mnist-test{n}")
    if (root / "done").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        link = root / name
        if not link.exists():
            link.symlink_to(FMNIST / name)
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz", "rb") as f:
        data = f.read()
    _, count, h, w = struct.unpack(">IIII", data[:16])
    assert n <= count, (n, count)
    with gzip.open(root / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, n, h, w) + data[16 : 16 + n * h * w])
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        data = f.read()
    with gzip.open(root / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x00000801, n) + data[8 : 8 + n])
    (root / "done").write_text(f"first {n} test images of {FMNIST}\n")
    return root


# ---------------------------------------------------------------------------- one run
def run_one(setting: str, spec: str, seed: int, chash: str, threads: int) -> dict:
    c = SETTINGS[setting]
    root = test_subset_root(c["test"])
    run_dir = RUN_ROOT / f"{Path(spec).stem}-seed{seed}-{chash}"
    data = data_setting(c)
    fresh = [
        sys.executable,
        "-m",
        "wirelang",
        "train",
        spec,
        "--seed",
        str(seed),
        "--epochs",
        str(c["epochs"]),
        "--batch-size",
        str(c["batch"]),
        "--set",
        f"data={data}",
        "--set",
        f"schedule={c['schedule']}",
        "--data-root",
        str(root),
        "--out",
        str(run_dir),
    ]
    if run_dir.exists() and (run_dir / "config.json").exists():
        cmd = [sys.executable, "-m", "wirelang", "train", spec, "--resume", str(run_dir)]
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # our own half-created directory
        cmd = fresh
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    print(f"[{time.strftime('%H:%M:%S')}] {setting} seed {seed}: {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wall = time.perf_counter() - t0
    (RUN_ROOT / f"{run_dir.name}.log").write_text(proc.stdout)
    records = (
        [
            json.loads(line)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if line.strip()
        ]
        if (run_dir / "metrics.jsonl").exists()
        else []
    )
    if proc.returncode != 0 or not records or "test_top1" not in records[-1]:
        tail = "\n".join(proc.stdout.strip().splitlines()[-5:])
        raise RuntimeError(f"{spec} seed {seed} failed (exit {proc.returncode}):\n{tail}")
    last = records[-1]
    return {
        "spec": spec,
        "setting": setting,
        "wiring": "random" if "random" in Path(spec).stem else "dnw",
        "seed": seed,
        "config_hash": chash,
        "config": config_of(setting),
        "schedule": {
            "epochs": c["epochs"],
            "batch": c["batch"],
            "schedule": c["schedule"],
            "steps_per_epoch": train_images(c) // c["batch"],
        },
        "test_top1": last["test_top1"],
        "test_images": c["test"],
        "val_top1": last.get("val_top1"),
        "best_val_top1": last.get("best_val_top1"),
        "val_images": c["val"],
        "train_top1": last["train_top1"],
        "epochs": len(records),
        "edges_swapped": [r["edges_swapped"] for r in records],
        "nfe": last.get("nfe"),
        "epoch_time_s": [round(r["time_s"], 1) for r in records],
        "wall_time_s": round(wall, 1),
        "command": shlex.join([f"OMP_NUM_THREADS={threads}", "wirelang"] + fresh[3:]),
        "code": code_version(),
        "run_dir": str(run_dir),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def code_version() -> dict:
    """wirelang's version and the repository's commit (recorded with each run, not hashed)."""
    from wirelang.version import __version__

    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return {
        "wirelang": __version__,
        "commit": head.stdout.strip() or None,
        "modified": bool(dirty.stdout.strip()),
    }


def write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- table
def _mean_std(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    m = 100 * statistics.mean(xs)
    s = 100 * statistics.stdev(xs) if len(xs) > 1 else float("nan")
    return f"{m:.1f} +- {s:.1f}" if not math.isnan(s) else f"{m:.1f} (1 seed)"


def load_results() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RUNS.glob("*.json"))]


def build_table(notes_extra: str = "") -> str:
    results = load_results()
    lines = [
        "# Tiny classifier on Fashion-MNIST: DNW vs a random graph at the same number of edges",
        "",
        "Written by `benchmarks/reproduce_fmnist.py` from `benchmarks/results/runs/*.json` "
        "(rebuild: `--table-only`). **Reduced configuration, not the paper's schedule:** see the notes.",
        "",
    ]
    lines += [
        "| Setting | Graph | seeds | test top-1 (%) | val top-1 (%) | DNW - random, paired by seed (test) "
        "| edges swapped per epoch (mean) | wall time / run | paper, CIFAR-10 (different data, 160 epochs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts, swap_notes = [], []
    for setting in ORDER:
        chash = config_hash(setting)
        rows = {
            w: [
                r
                for r in results
                if r["setting"] == setting and r["wiring"] == w and r["config_hash"] == chash
            ]
            for w in ("random", "dnw")
        }
        by_seed = {w: {r["seed"]: r for r in rows[w]} for w in rows}
        paired = sorted(set(by_seed["dnw"]) & set(by_seed["random"]))
        diffs = [by_seed["dnw"][s]["test_top1"] - by_seed["random"][s]["test_top1"] for s in paired]
        for w in ("random", "dnw"):
            rs = rows[w]
            if not rs:
                lines.append(
                    f"| {setting} | {w} | 0 | not run yet | | | | | {PAPER_CIFAR10[(setting, w)]} |"
                )
                continue
            swaps = [statistics.mean(sum(e.values()) for e in r["edges_swapped"]) for r in rs]
            diff = ""
            if w == "dnw" and diffs:
                wins = sum(d > 0 for d in diffs)
                diff = (
                    f"{100 * statistics.mean(diffs):+.1f}"
                    + (f" +- {100 * statistics.stdev(diffs):.1f}" if len(diffs) > 1 else "")
                    + f" (DNW ahead in {wins}/{len(diffs)})"
                )
            wall = statistics.mean(r["wall_time_s"] for r in rs)
            lines.append(
                f"| {setting} | {'DNW' if w == 'dnw' else 'random'} | {len(rs)} "
                f"({', '.join(str(r['seed']) for r in sorted(rs, key=lambda r: r['seed']))}) "
                f"| {_mean_std([r['test_top1'] for r in rs])} | {_mean_std([r['val_top1'] for r in rs])} "
                f"| {diff} | {statistics.mean(swaps):,.0f} | {wall:.0f} s | {PAPER_CIFAR10[(setting, w)]} |"
            )
        if rows["dnw"]:
            totals = [sum(sum(e.values()) for e in r["edges_swapped"]) for r in rows["dnw"]]
            k = SETTINGS[setting]["k"]
            swap_notes.append(
                f"- {setting}: DNW swapped {statistics.mean(totals):,.0f} edges in total over "
                f"{train_images(SETTINGS[setting]) // SETTINGS[setting]['batch'] * SETTINGS[setting]['epochs']} "
                f"steps (mean over seeds), {100 * statistics.mean(totals) / k:.1f}% of its k = {k:,}; "
                f"per epoch: {[sum(e.values()) for e in rows['dnw'][0]['edges_swapped']]} (seed {rows['dnw'][0]['seed']})."
            )
        if diffs:
            vdiffs = [
                by_seed["dnw"][s]["val_top1"] - by_seed["random"][s]["val_top1"]
                for s in paired
                if by_seed["dnw"][s]["val_top1"] is not None
                and by_seed["random"][s]["val_top1"] is not None
            ]
            verdicts.append(f"- {setting}: {paired_verdict(diffs, vdiffs, setting)}")
        else:
            verdicts.append(f"- {setting}: no paired result yet.")
    lines += [
        "",
        "## The claim: DNW beats the random graph at the same number of edges, in every setting",
        "",
    ]
    lines += verdicts
    lines += [
        "",
        "How far the wiring moved away from its starting top-k (a DNW graph that swaps few edges is "
        "still close to a random graph: the top-k of the random initial weights):",
        "",
    ]
    lines += swap_notes or ["- no DNW run yet."]
    lines += authors_section(results)
    lines += earlier_series(results)
    lines += ["", "## Configuration (per setting; identical for DNW and random)", ""]
    lines += [
        "| Setting | network | train images | val images | test images | batch | epochs (steps) | schedule | config hash |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for setting in ORDER:
        c = SETTINGS[setting]
        steps = train_images(c) // c["batch"] * c["epochs"]
        test = "all of t10k" if c["test"] == 10000 else "first of t10k"
        lines.append(
            f"| {setting} | {c['nodes']} | {train_images(c)} | {c['val']} | {c['test']} ({test}) "
            f"| {c['batch']} | {c['epochs']} ({steps}) | {c['schedule']}, SGD lr 0.1, momentum 0.9, wd 1e-4 "
            f"| `{config_hash(setting)}` |"
        )
    lines += [
        "",
        "## Notes",
        "",
        "- Dataset: the real Fashion-MNIST (the Debian package's files). Training images: the first N of the "
        "seeded training permutation (`data.subset`), validation: a held-out count of the 60,000 training images "
        "(`data.val`, evaluated without augmentation); test: the official test file t10k (the first N images "
        "where the configuration says fewer than 10,000). Augmentation: random crop (padding) and horizontal "
        "flip, the dataset's default.",
        "- Short schedule: a few epochs on a few thousand images, cosine decay from the paper's lr 0.1 at batch "
        "128 (the paper: 512, 160 epochs), so all numbers are below a converged Fashion-MNIST classifier "
        "(~90%); they compare DNW with the random graph under the same short budget, nothing more.",
        "- Static and discrete run the paper's networks as written (`specs/fmnist_tiny.wire`, "
        "`specs/fmnist_tiny_discrete.wire` and their `_random` twins). Continuous uses a quarter-size stand-in "
        "(`benchmarks/specs/fmnist_small_continuous*.wire`: 200 nodes all-to-all with self loops, 2,000 edges "
        "= 5% of 200 x 200, everything else as in `specs/lib/tiny.wire`) with fixed-step rk4, step 0.25 "
        "(16 function evaluations), instead of the paper's dopri5: the full network with dopri5 trains at "
        "~6 images/s on this CPU, with rk4 at ~19.",
        "- The paper's column is CIFAR-10 after 160 epochs of the full network (mean +- std over seeds): a "
        "different dataset and a different schedule, shown for reference only, not comparable number for number.",
        "- mean +- std: sample standard deviation over seeds; the paired column is DNW minus random for the "
        "same seed (same data order, same initial weights of the shared layers). With 1,000 test images one "
        "run's accuracy has a binomial standard error of about 1.5 points (0.5 with 10,000).",
        "- `edges swapped per epoch`: edges that entered the active top-k set during the epoch, from "
        "metrics.jsonl (a random graph's mask is fixed: 0).",
        "- Command per run: the `command` field of each JSON file (run with OMP_NUM_THREADS=2, one process).",
    ]
    if notes_extra:
        lines += ["", FINDINGS, "", notes_extra.strip()]
    return "\n".join(lines) + "\n"


# Two-sided 95% critical values of Student's t for 1..10 degrees of freedom.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def paired_verdict(diffs: list[float], vdiffs: list[float], setting: str) -> str:
    """DNW - random per seed: a paired t-test over seeds (seed-to-seed training noise included).

    One seed has no estimate of that noise: only the test set's binomial error is stated then,
    and the result is called inconclusive whatever its size."""
    n, m = len(diffs), statistics.mean(diffs)
    ahead = f"DNW ahead in {sum(d > 0 for d in diffs)}/{n}"
    val = (
        f"Validation: {100 * statistics.mean(vdiffs):+.1f} points, DNW ahead in "
        f"{sum(d > 0 for d in vdiffs)}/{len(vdiffs)}."
        if vdiffs
        else "No validation split."
    )
    if n == 1:
        images = SETTINGS[setting]["test"]
        return (
            f"one paired seed, inconclusive. Test: DNW - random = {100 * m:+.1f} points ({ahead}); the test "
            f"set alone ({images:,} images) gives that difference a binomial standard error of "
            f"~{100 * math.sqrt(2 * 0.8 * 0.2 / images):.1f}, seed-to-seed noise is unknown. {val}"
        )
    se = statistics.stdev(diffs) / math.sqrt(n)
    crit = T95[min(n - 1, len(T95)) - 1]
    tstat = m / se if se > 0 else math.inf * (1 if m > 0 else -1)
    if abs(tstat) > crit:
        verdict = "DNW ahead" if m > 0 else "DNW BEHIND"
        verdict += f", significant at 95% (paired t-test over seeds: |t| = {abs(tstat):.2f} > {crit}, df = {n - 1})"
    else:
        verdict = ("DNW ahead on average" if m > 0 else "DNW not ahead") + (
            f", not significant at 95% (paired t-test over seeds: |t| = {abs(tstat):.2f} <= {crit}, df = {n - 1})"
        )
    return (
        f"{verdict}. Test: DNW - random = {100 * m:+.2f} +- {100 * se:.2f} points (mean +- standard error "
        f"over {n} paired seeds), {ahead}. {val}"
    )


AUTHORS = RESULTS / "authors"


def authors_section(results: list[dict]) -> list[str]:
    """The authors' own static network (benchmarks/authors_dnw.py) beside wirelang's, per seed,
    at the static_full schedule (the same data, augmentation, batch order and schedule)."""
    runs = [json.loads(p.read_text()) for p in sorted(AUTHORS.glob("static-*.json"))]
    # their head (a 2 x 2 patch); `--head nine` probes are in the findings
    runs = [r for r in runs if r.get("head", "authors") == "authors"]
    if not runs:
        return []
    chash = config_hash("static_full")
    ours = {
        (r["wiring"], r["seed"]): r
        for r in results
        if r["setting"] == "static_full" and r["config_hash"] == chash
    }
    # the authors' code as published (probes that change one thing, `rank`, are in the findings)
    published = [
        r
        for r in runs
        if r.get("rank", "matrix") == "matrix"
        and r.get("random_region", "staircase") == "staircase"
    ]
    theirs = {(r["graph"], r["seed"]): r for r in published}
    # their random graph redrawn with all k edges where their DAG reads (`--random-region dag`)
    fair = {r["seed"]: r for r in runs if r.get("random_region") == "dag"}
    lines = [
        "",
        "## The authors' code on the same data (static, every training image, 4 epochs)",
        "",
        "`benchmarks/authors_dnw.py`: the authors' `StaticNeuralGraph` (allenai/dnw) with their DNW and their "
        "random graph, trained by wirelang's data pipeline and schedule (same images, augmentation, batch order, "
        "per-step cosine, SGD). Test top-1 on all 10,000 test images. `in DAG`: how many of the graph's 32,000 "
        "ranked edges lie where the authors' static forward pass reads them. `all k in DAG`: their random graph "
        "redrawn with every edge where the DAG reads (`--random-region dag`), as wirelang's random graph places "
        "its edges on declared candidates.",
        "",
        "| seed | authors DNW | authors random (in DAG) | authors random, all k in DAG | wirelang DNW "
        "| wirelang random | authors DNW - random (all k in DAG) | wirelang DNW - random "
        "| wirelang DNW - authors DNW |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(r, key="test_top1", scale=1.0):
        return f"{scale * r[key]:.2f}" if r is not None else "-"

    def diff(a, b, sa=1.0, sb=1.0):
        return (
            f"{sa * a['test_top1'] - sb * b['test_top1']:+.2f}"
            if a is not None and b is not None
            else "-"
        )

    for seed in sorted({s for _, s in theirs} | {s for _, s in ours}):
        ad, ar, af = theirs.get(("dnw", seed)), theirs.get(("random", seed)), fair.get(seed)
        wd, wr = ours.get(("dnw", seed)), ours.get(("random", seed))
        rand = f"{pct(ar)} ({ar['edges_in_dag']:,})" if ar is not None else "-"
        lines.append(
            f"| {seed} | {pct(ad)} | {rand} | {pct(af)} | {pct(wd, scale=100)} | {pct(wr, scale=100)} "
            f"| {diff(ad, ar)} ({diff(ad, af)}) | {diff(wd, wr, 100, 100)} | {diff(wd, ad, 100, 1)} |"
        )
    return lines


def earlier_series(results: list[dict]) -> list[str]:
    """Runs of earlier configurations (other config hashes), one line per setting, hash and graph."""
    current = {s: config_hash(s) for s in ORDER}
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in results:
        if r["config_hash"] != current[r["setting"]]:
            groups.setdefault((r["setting"], r["config_hash"], r["wiring"]), []).append(r)
    if not groups:
        return []
    lines = [
        "",
        "## Earlier configurations",
        "",
        "Kept for the record; not comparable with the table above (other networks, data or schedules).",
        "",
        "| Setting | config hash | graph | seeds | test top-1 (%) | val top-1 (%) "
        "| train images x epochs, batch | specs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = sorted(groups.items(), key=lambda kv: (ORDER.index(kv[0][0]), kv[0][1], kv[0][2]))
    for (setting, chash, wiring), rs in order:
        cfg, sched = rs[0]["config"], rs[0]["schedule"]
        seeds = ", ".join(str(r["seed"]) for r in sorted(rs, key=lambda r: r["seed"]))
        specs = ", ".join(f"`{s}`" for s in cfg.get("specs_meaning") or cfg.get("specs_sha256", {}))
        lines.append(
            f"| {setting} | `{chash}` | {'DNW' if wiring == 'dnw' else 'random'} | {len(rs)} ({seeds}) "
            f"| {_mean_std([r['test_top1'] for r in rs])} ({rs[0]['test_images']} images) "
            f"| {_mean_std([r['val_top1'] for r in rs])} "
            f"| {cfg['train']['data']} x {sched['epochs']}, {sched['batch']} | {specs} |"
        )
    return lines


FINDINGS = "## Findings"


def write_table() -> None:
    """Rebuild fmnist.md; a hand-written `## Findings` section at its end is kept as it is."""
    old = TABLE.read_text(encoding="utf-8") if TABLE.exists() else ""
    extra = old.split(FINDINGS, 1)[1] if FINDINGS in old else ""
    TABLE.write_text(build_table(extra), encoding="utf-8")


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settings", nargs="+", default=list(ORDER), choices=ORDER)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument(
        "--budget-min", type=float, default=None, help="start no new run after this many minutes"
    )
    ap.add_argument(
        "--table-only", action="store_true", help="rebuild fmnist.md from the JSON files and exit"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads per run (1 when two jobs share 2 cores)",
    )
    args = ap.parse_args(argv)
    RUNS.mkdir(parents=True, exist_ok=True)
    if args.table_only:
        write_table()
        print(TABLE.read_text())
        return 0
    RUN_ROOT.mkdir(parents=True, exist_ok=True)
    start, failures = time.perf_counter(), 0
    for setting in [s for s in ORDER if s in args.settings]:
        chash = config_hash(setting)
        for seed in args.seeds:
            for spec in SETTINGS[setting]["specs"]:
                out = result_path(spec, seed, chash)
                if out.exists():
                    print(f"skip {out.name} (exists)")
                    continue
                if (
                    args.budget_min is not None
                    and time.perf_counter() - start > 60 * args.budget_min
                ):
                    print(
                        f"budget of {args.budget_min} min used; stopping before {spec} seed {seed}"
                    )
                    write_table()
                    return 0
                try:
                    result = run_one(setting, spec, seed, chash, args.threads)
                except RuntimeError as err:
                    failures += 1
                    print(f"FAILED: {err}", flush=True)
                    continue
                write_json_atomic(out, result)
                print(
                    f"  -> test {100 * result['test_top1']:.2f}%, val {result['val_top1']}, "
                    f"{result['wall_time_s']:.0f} s, swapped {result['edges_swapped']} -> {out.relative_to(REPO)}",
                    flush=True,
                )
                write_table()
    write_table()
    print(f"total {time.perf_counter() - start:.0f} s, {failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
