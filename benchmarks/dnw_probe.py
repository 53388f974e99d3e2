"""Probe where DNW gains or loses against a random graph early in training.

    /work/venv/bin/python benchmarks/dnw_probe.py benchmarks/specs/fmnist_small_continuous.wire \
        benchmarks/specs/fmnist_small_continuous_random.wire --steps 32

Takes a DNW spec and its random-graph twin (identical but for `wiring`) and trains, from the
same seed and on the same batches (the Fashion-MNIST images shipped with the package: the first
`--images` training images, batch 128, SGD lr 0.1, momentum 0.9, weight decay 1e-4, constant lr),
five variants for `--steps` steps, then evaluates each on the first 1,000 shipped test images:

- `dnw`: the DNW spec as it is;
- `random`: the random graph as it is;
- `random_rescaled`: the random graph with every edge weight multiplied by the ratio of the mean
  |w| of DNW's initial active edges to the random graph's (the top-k of |w| starts ~2.9x larger
  than a random pick of the same weights; this isolates that scale);
- `dnw_frozen`: DNW's own initial graph and weights, with the mask frozen (no rewiring, no
  gradient to inactive edges): DNW without its learning of the graph;
- `dnw_no_update`: the DNW spec with `dnw_no_update` (the graph follows the weights, but inactive
  edges get no gradient, so only shrinking active edges can be replaced).

For `dnw` it also records the rewiring per step: edges entering the top-k, edges re-entering
after having left (chattering) and the net change from the initial graph. Prints one JSON line per
variant and, with `--out FILE.json`, writes them all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wirelang.backend.api import compile_network
from wirelang.data.small import load_small_arrays
from wirelang.frontend import build

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST's pixel statistics, as the dataset's transform uses


def data(images: int) -> tuple[torch.Tensor, ...]:
    d = load_small_arrays()

    def prep(a: np.ndarray) -> torch.Tensor:
        return (torch.from_numpy(a).float().div(255).unsqueeze(1) - MEAN) / STD

    return (
        prep(d["train_images"][:images]),
        torch.from_numpy(d["train_labels"][:images]).long(),
        prep(d["test_images"][:1000]),
        torch.from_numpy(d["test_labels"][:1000]).long(),
    )


def load(spec: Path, seed: int, text: str | None = None):
    return compile_network(build(spec, text), seed=seed)


def active_scale(model) -> float:
    """Mean |w| over the active edges of every learned wiring."""
    vals = [
        w.detach()[a].abs()
        for mask in model.masks().values()
        for w, a in zip(mask.weights(), mask.active(), strict=True)
    ]
    return torch.cat(vals).mean().item()


def dnw_frozen(dnw_spec: Path, random_spec: Path, seed: int):
    """The random-graph model carrying DNW's initial weights and DNW's initial top-k as its fixed mask."""
    dnw, frozen = load(dnw_spec, seed=seed), load(random_spec, seed=seed)
    state = frozen.state_dict()
    for key, value in dnw.state_dict().items():
        if key in state and not key.rsplit(".", 1)[-1].startswith("fixed_"):
            state[key] = value
    frozen.load_state_dict(state)
    for md, mf in zip(dnw.masks().values(), frozen.masks().values(), strict=True):
        mf._set_fixed(md.active())
    return frozen


def train(model, batches: list[torch.Tensor], x, y, xt, yt, track: bool) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    start = model.active_masks() if track else None
    prev = start
    left = {k: torch.zeros_like(v) for k, v in start.items()} if track else None
    losses, entries, re_entries = [], [], 0
    t0 = time.perf_counter()
    for idx in batches:
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if track:
            now = model.active_masks()
            entries.append(sum(int((now[k] & ~prev[k]).sum()) for k in now))
            re_entries += sum(int((now[k] & ~prev[k] & left[k]).sum()) for k in now)
            for k in now:
                left[k] |= prev[k] & ~now[k]
            prev = now
    model.eval()
    with torch.no_grad():
        top1 = (model(xt).argmax(1) == yt).float().mean().item()
    out = {
        "loss_first_quarter": float(np.mean(losses[: max(1, len(losses) // 4)])),
        "loss_last_quarter": float(np.mean(losses[-max(1, len(losses) // 4) :])),
        "test_top1": top1,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if track:
        k = sum(int(v.sum()) for v in start.values())
        out.update(
            k=k,
            entries_per_step=entries,
            re_entries=re_entries,
            net_changed=sum(int((prev[q] & ~start[q]).sum()) for q in prev),
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dnw_spec", type=Path)
    ap.add_argument("random_spec", type=Path)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--variants", nargs="+", default=None, help="run only these (default: all five)"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y, xt, yt = data(args.images)
    g = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, len(x), (128,), generator=g) for _ in range(args.steps)]

    dnw = load(args.dnw_spec, seed=args.seed)
    rnd = load(args.random_spec, seed=args.seed)
    ratio = active_scale(dnw) / active_scale(rnd)
    rescaled = load(args.random_spec, seed=args.seed)
    with torch.no_grad():
        for mask in rescaled.masks().values():
            for w in mask.weights():
                w.mul_(ratio)
    text = args.dnw_spec.read_text(encoding="utf-8")
    if "method=dnw" not in text:
        sys.exit(f"{args.dnw_spec}: no `method=dnw` to turn into dnw_no_update")
    no_update = load(args.dnw_spec, args.seed, text.replace("method=dnw", "method=dnw_no_update"))
    variants = [
        ("dnw", dnw),
        ("random", rnd),
        ("random_rescaled", rescaled),
        ("dnw_frozen", dnw_frozen(args.dnw_spec, args.random_spec, args.seed)),
        ("dnw_no_update", no_update),
    ]
    rows = []
    for name, model in variants:
        if args.variants and name not in args.variants:
            continue
        torch.manual_seed(args.seed)  # the same random stream for every variant
        row = {
            "variant": name,
            "initial_active_scale": round(active_scale(model), 4),
            **train(model, batches, x, y, xt, yt, track=name in ("dnw", "dnw_no_update")),
        }
        if name == "random_rescaled":
            row["scale_ratio"] = round(ratio, 3)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out is not None:
        meta = {
            "dnw_spec": str(args.dnw_spec),
            "random_spec": str(args.random_spec),
            "steps": args.steps,
            "images": args.images,
            "seed": args.seed,
            "command": " ".join(["python", "benchmarks/dnw_probe.py", *sys.argv[1:]]),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
