"""Train the DNW authors' own static tiny classifier on Fashion-MNIST: the comparator for
wirelang's DNW and random graphs.

    git -C /work/.mirror/allenai+dnw/repo archive HEAD models genutil | tar -x -C /tmp/dnw-authors
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/authors_dnw.py --authors /tmp/dnw-authors \
        --graph dnw --seed 0          # or --graph random
    # their discrete-time graph (T = 5) and their continuous one (quarter size, rk4 step 0.25)
    # on the reduced data of benchmarks/reproduce_fmnist.py's `discrete` and `continuous`:
    ... --setting discrete --subset 4096 --val 1000 --graph dnw --seed 0
    ... --setting continuous --size quarter --solver rk4 --step-size 0.25 --subset 4096 --val 1000

The model is the authors' `StaticNeuralGraph` from allenai/dnw, imported unchanged from a local
copy of their repository (nothing of it is copied into wirelang). This adapter only supplies what
their YAML config would: the global `FLAGS` object their modules read at import time, set for
1-channel 28x28 input (`in_channels 1`, `image_size 28`: the stem then yields 7x7 maps as it
yields 8x8 on CIFAR-10) and otherwise the values of their `apps/small_scale/static_*.yml`.

Everything around the model is wirelang's, so that the two differ in the model alone: the same
Fashion-MNIST files and augmentation (`wirelang.data.build_datasets`, random crop with padding 2,
horizontal flip), the same order of training batches (`GlobalBatchSampler`, a permutation seeded
with seed + epoch, the last partial batch dropped), the same per-step cosine schedule
(`wirelang.train.optim.lr_factor`), SGD lr 0.1 momentum 0.9 weight decay 1e-4 on every parameter,
and test top-1 over all 10,000 test images. The model's random state (its initial weights and the
random graph's mask) comes from `torch.manual_seed(seed)` as in the authors' `train.py`.

One JSON per run goes to benchmarks/results/authors/static-<graph>-seed<seed>.json: test top-1,
edges swapped per epoch (changes of the top-k set over the whole 800 x 800 matrix, as the
authors rank it), how many of the k ranked edges lie where the DAG reads them, and wall time.
A run checkpoints every epoch under /tmp/wirelang-runs/authors/ and resumes from there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "results" / "authors"
RUN_ROOT = Path("/tmp/wirelang-runs/authors")


class Flags(dict):
    """The attribute-access dict the authors' modules expect as `genutil.config.FLAGS`."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:  # `getattr(FLAGS, "use_dgl", False)` must see a missing flag
            raise AttributeError(name) from None


# Their three tiny classifiers, and the sizes: the paper's 800-node network, or the quarter-size
# one (200 nodes, 8 from the stem, 25 outputs, 5% of 200 x 200 = 2,000 edges) that
# benchmarks/specs/lib/small_cyclic.wire uses for continuous time on this CPU.
CLASSES = {
    "static": "StaticNeuralGraph",
    "discrete": "DiscreteTimeNeuralGraph",
    "continuous": "ContinuousTimeNeuralGraph",
    # their MobileNetV1 with learned pointwise wirings (apps/medium_scale/mobilenetv1_*_x225.yml):
    # the comparator for benchmarks/methods_fmnist.py's wiring-method table
    "mbv1": "MobileNetV1Like",
}
# x0.225: each stage keeps as many edges as a MobileNetV1 of width 0.225 (their prune_rate 0.775)
MBV1_PRUNE_RATE = 0.775
SIZES = {"full": (800, 32, 100), "quarter": (200, 8, 25)}


def authors_model(
    authors: Path, graph: str, seed: int, setting: str = "static", size: str = "full"
) -> torch.nn.Module:
    if setting == "mbv1":
        return authors_mbv1(authors, graph, seed)
    dim, downsample, feature = SIZES[size]
    flags = Flags(
        in_channels=1,
        image_size=28,
        output_size=10,  # the Fashion-MNIST adaptation
        dim=dim,
        downsample_dim=downsample,
        feature_dim=feature,
        layers=5,  # the static network's blocks; discrete time's T
        prune_rate=0.95,
        graph=graph,
        setting=setting,
        device="cpu",
    )
    _install_flags(authors, flags)
    from models.graphs import neuralgraph  # noqa: PLC0415 (needs FLAGS first)

    torch.manual_seed(seed)
    return getattr(neuralgraph, CLASSES[setting])()


def _install_flags(authors: Path, flags: Flags) -> None:
    """Their modules do `from genutil.config import FLAGS` at import time; supply that module
    without their YAML loader."""
    config = types.ModuleType("genutil.config")
    config.FLAGS = flags
    sys.modules["genutil"] = types.ModuleType("genutil")
    sys.modules["genutil.config"] = config
    sys.path.insert(0, str(authors))


def authors_mbv1(authors: Path, graph: str, seed: int) -> torch.nn.Module:
    """Their `MobileNetV1Like` with the values of apps/medium_scale/mobilenetv1_<graph>_x225.yml,
    for 1-channel 28x28 input: `image_size` 28 keeps their first conv at stride 1 (as on
    CIFAR-10), and that conv, which their code builds for 3 channels whatever `in_channels`
    says, is rebuilt for 1 channel (drawn last, after their graph weights and masks)."""
    flags = Flags(
        in_channels=1,
        image_size=28,
        output_size=10,
        prune_rate=MBV1_PRUNE_RATE,
        graph=graph,
        setting="static",
        device="cpu",
    )
    _install_flags(authors, flags)
    from models.graphs import mobilenetv1like  # noqa: PLC0415 (needs FLAGS first)

    torch.manual_seed(seed)
    model = mobilenetv1like.MobileNetV1Like()
    model.conv1 = torch.nn.Conv2d(1, 32, kernel_size=3, stride=1, padding=1, bias=False)
    return model


def fixed_step_solver(model: torch.nn.Module, method: str, step_size: float) -> None:
    """Swap their ODE block's adaptive dopri5 (rtol = atol = 1e-3) for a fixed-step solver, the
    one wirelang's continuous benchmark uses (its cost per batch is bounded on a CPU)."""
    import functools

    from torchdiffeq import odeint

    model.odesolve.solver = functools.partial(
        odeint, method=method, options={"step_size": step_size}
    )


def used_region(
    dim: int = 800, first: int = 32, block: int = 192, feature: int = 100
) -> torch.Tensor:
    """Entries (target, source) of the 800 x 800 weight that the authors' static forward reads."""
    rng = [0, first] + [first + (i + 1) * block for i in range(4)]
    used = torch.zeros(dim, dim, dtype=torch.bool)
    for i in range(5):
        used[min(rng[i + 1], dim - feature) :, rng[i] : rng[i + 1]] = True
    return used


def mbv1_used_region(model: torch.nn.Module) -> torch.Tensor:
    """The entries of each MobileNet stage's weight (target, source) that their forward reads,
    flattened like `effective`: every target reads the stage's inputs, and the targets after
    block i read block i's nodes. Their DNW ranks the whole rectangle, as in the tiny graph."""
    parts = []
    for stage in model.layers:
        used = torch.zeros(stage.graph.weight.shape[:2], dtype=torch.bool)
        used[:, : stage.inp] = True
        for i in range(stage.blocks - 1):
            c0 = stage.inp + i * stage.oup
            used[(i + 1) * stage.oup :, c0 : c0 + stage.oup] = True
        parts.append(used.flatten())
    return torch.cat(parts)


def rank_dag_only(model: torch.nn.Module) -> None:
    """Make the authors' DNW rank only the entries their static forward reads: their own top-k
    function applied to the weight with every other entry zeroed (those get no gradient anyway)."""
    from models.graphs.util import ChooseTopEdges  # the authors' straight-through top-k

    graph = model.graph
    dag = used_region().to(graph.weight.dtype)[:, :, None, None]
    graph.get_weight = lambda: ChooseTopEdges.apply(graph.weight * dag, graph.prune_rate)


def random_in_dag(model: torch.nn.Module, seed: int) -> None:
    """Redraw the authors' random graph with all k edges where the static forward reads them, as
    wirelang's random graph places them on declared candidates: the baseline without the
    handicap of edges the DAG never uses (their staircase mask leaves ~16% of k outside it)."""
    graph = model.graph
    used = used_region().flatten()
    k = int(round((1 - graph.prune_rate) * used.numel()))
    candidates = used.nonzero().squeeze(1)
    g = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(candidates.numel(), generator=g)[:k]]
    mask = torch.zeros(used.numel(), dtype=graph.mask.dtype)
    mask[chosen] = 1.0
    graph.mask.copy_(mask.view_as(graph.mask))


def effective(model: torch.nn.Module) -> torch.Tensor:
    """The boolean top-k (DNW) or random mask the forward pass applies: 800 x 800, or every
    MobileNet stage's weight flattened one after another."""
    with torch.no_grad():
        w = model.get_weight()
        if isinstance(w, list):
            return torch.cat([x.flatten() for x in w]) != 0
        return w.squeeze() != 0


def evaluate(model: torch.nn.Module, ds, batch: int = 500) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(ds), batch):
            xs, ys = zip(*(ds[j] for j in range(i, min(i + batch, len(ds)))), strict=True)
            out = model(torch.stack(xs))
            correct += int((out.argmax(1) == torch.tensor(ys)).sum())
    model.train()
    return 100.0 * correct / len(ds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--authors", type=Path, required=True, help="a checkout of allenai/dnw")
    p.add_argument(
        "--graph",
        choices=("dnw", "random", "dnw_no_update"),
        required=True,
        help="their graph type (dnw_no_update: the paper's 'DNW without the update rule')",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--data-root", default="/usr/share/datasets/fashion-mnist")
    p.add_argument(
        "--rank",
        choices=("matrix", "dag"),
        default="matrix",
        help="DNW ranks |w| over the whole 800 x 800 matrix (the authors' code) or only where the "
        "DAG reads it (as wirelang ranks only declared candidates): one difference, isolated",
    )
    p.add_argument(
        "--random-region",
        choices=("staircase", "dag"),
        default="staircase",
        help="the random graph's k edges among the authors' staircase mask (their code) or only "
        "where the DAG reads (as wirelang's random graph): the other half of the comparison",
    )
    p.add_argument(
        "--head",
        choices=("authors", "nine"),
        default="authors",
        help="authors: their crop of rows and columns 1-3 of the 7 x 7 maps pooled 2 x 2 (a 2 x 2 "
        "patch, rows 1-2); nine: the mean of the centre 3 x 3 (rows 2-4), wirelang's fmnist_tiny head",
    )
    p.add_argument("--setting", choices=tuple(CLASSES), default="static")
    p.add_argument(
        "--size", choices=tuple(SIZES), default="full", help="quarter: 200 nodes, 2,000 edges"
    )
    p.add_argument(
        "--subset", type=int, default=None, help="train on the first N images (wirelang's subset)"
    )
    p.add_argument("--val", type=int, default=0, help="held-out images, as wirelang's data.val")
    p.add_argument(
        "--solver",
        default=None,
        help="continuous time: a fixed-step solver with --step-size instead of their dopri5",
    )
    p.add_argument("--step-size", type=float, default=0.25)
    args = p.parse_args()
    if args.rank == "dag" and args.setting != "static":
        p.error("--rank dag is about the static DAG only")
    if args.random_region == "dag" and (args.setting != "static" or args.graph != "random"):
        p.error("--random-region dag is about the static random graph only")

    from wirelang.data import build_datasets
    from wirelang.train.data import GlobalBatchSampler
    from wirelang.train.distributed import Dist
    from wirelang.train.optim import Phase, lr_factor
    from wirelang.train_config import OptimizerConfig, ScheduleConfig

    splits = build_datasets(
        "fashion_mnist",
        args.data_root,
        val_size=args.val,
        augment=True,
        seed=args.seed,
        train_subset=args.subset,
    )
    model = authors_model(args.authors, args.graph, args.seed, args.setting, args.size)
    if args.rank == "dag":
        rank_dag_only(model)
    if args.random_region == "dag":
        random_in_dag(model, args.seed)
    if args.head == "nine":
        if args.setting == "mbv1":
            p.error("--head nine is about the tiny networks' head")
        model.half = model.half + 1  # their crop starts at half - 1: rows 2-4 of 7
        model.pool = torch.nn.AvgPool2d(3)
    if args.setting == "continuous" and args.solver is not None:
        fixed_step_solver(model, args.solver, args.step_size)
    opt_cfg = OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4)
    phase = Phase(1, args.epochs, opt_cfg, ScheduleConfig(name="cosine"), 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    dist = Dist()
    sampler = GlobalBatchSampler(splits.train, args.batch, dist, args.seed)
    loader = torch.utils.data.DataLoader(
        splits.train, batch_size=args.batch, sampler=sampler, drop_last=True
    )

    name = (
        f"{args.setting}-{args.graph}-seed{args.seed}"
        + ("-rankdag" if args.rank == "dag" else "")
        + ("-randomdag" if args.random_region == "dag" else "")
        + ("-headnine" if args.head == "nine" else "")
        + ("" if args.size == "full" else f"-{args.size}")
        + ("" if args.subset is None else f"-subset{args.subset}-val{args.val}-e{args.epochs}")
        # the full data's runs are named without their epochs at the 4; any other count
        # must not resume (or overwrite) those
        + ("" if args.subset is not None or args.epochs == 4 else f"-e{args.epochs}")
        + ("" if args.solver is None else f"-{args.solver}{args.step_size:g}")
    )
    run = RUN_ROOT / name
    run.mkdir(parents=True, exist_ok=True)
    state = {"epoch": 0, "swapped": [], "seconds": 0.0}
    if (run / "last.pt").exists():
        ck = torch.load(run / "last.pt", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = json.loads((run / "state.json").read_text())
        print(f"resumed {name} after epoch {state['epoch']}")

    dim, _, feature = SIZES[args.size]
    if args.setting == "static":
        used = used_region()
    elif args.setting == "mbv1":
        used = mbv1_used_region(model)
    else:  # cyclic: every entry is read
        used = torch.ones(dim, dim, dtype=torch.bool)
    for epoch in range(state["epoch"], args.epochs):
        start = time.time()
        before = effective(model)
        sampler.set_epoch(epoch)
        torch.manual_seed(args.seed * 1_000_003 + epoch * 1_009)  # augmentation draws
        for step, (x, y) in enumerate(loader):
            factor = lr_factor(epoch * sampler.steps + step, sampler.steps, phase)
            for g in opt.param_groups:
                g["lr"] = 0.1 * factor
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 100 == 0:
                print(
                    f"{name} epoch {epoch + 1} step {step}/{sampler.steps} loss {loss.item():.4f}",
                    flush=True,
                )
        after = effective(model)
        state["swapped"].append(int((after & ~before).sum()))
        state["epoch"] = epoch + 1
        state["seconds"] += time.time() - start
        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, run / "last.pt.tmp")
        (run / "last.pt.tmp").replace(run / "last.pt")
        (run / "state.json").write_text(json.dumps(state))
        print(f"{name} epoch {epoch + 1}: swapped {state['swapped'][-1]}", flush=True)

    mask = effective(model)
    result = {
        "model": f"allenai/dnw {CLASSES[args.setting]}",
        "setting": args.setting,
        "size": args.size,
        "subset": args.subset,
        "val": args.val,
        "solver": args.solver or ("dopri5" if args.setting == "continuous" else None),
        "step_size": args.step_size if args.solver else None,
        "rank": args.rank,
        "random_region": args.random_region,
        "head": args.head,
        "graph": args.graph,
        "seed": args.seed,
        "epochs": args.epochs,
        "batch": args.batch,
        "steps": args.epochs * sampler.steps,
        "schedule": "cosine (per step), SGD lr 0.1 momentum 0.9 wd 1e-4",
        "test_top1": round(evaluate(model, splits.test), 2),
        "edges_ranked": int(mask.sum()),
        "edges_in_dag": int((mask & used).sum()),
        "edges_swapped_per_epoch": state["swapped"],
        "wall_seconds": round(state["seconds"]),
        "command": " ".join(
            ["python", "benchmarks/authors_dnw.py"]
            + ["DIR" if a == str(args.authors) else a for a in sys.argv[1:]]
        ),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
