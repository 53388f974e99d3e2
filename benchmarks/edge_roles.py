"""Where a learned cyclic graph puts its edges: between hidden nodes, or on the input/output nodes.

In discrete time every node but the inputs starts at 0 (the paper's Z_u(0)), so at the first
steps only edges that leave input nodes or enter output nodes change the loss, and they get the
largest gradients. This script measures how much of the budget DNW spends there, in wirelang's
runs and in the authors' code, against a random graph (which spreads its edges uniformly):

    python benchmarks/edge_roles.py RUN_DIR ...                    # wirelang run directories
    python benchmarks/edge_roles.py --authors AUTHORS_RUN_DIR ...  # benchmarks/authors_dnw.py's

Roles: wirelang reads each set's role from the run (`wirelang inspect --json`); in the authors'
800-node cyclic graph the first 32 nodes take the stem's maps (input) and the last 100 feed the
classifier (output). Prints one row per run: the share of the k edges with both ends hidden,
the same share among all candidates (what a uniform graph gets), edges into output nodes,
edges out of input nodes, and hidden nodes left with no incoming edge.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

AUTHORS_INPUTS, AUTHORS_OUTPUTS, AUTHORS_NODES = 32, 100, 800


def wirelang_roles(run: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "wirelang", "inspect", "--json", str(run)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    (graph,) = json.loads(out)["graphs"]
    role = {s["name"]: s["role"] for s in graph["sets"]}
    hidden_no_input = sum(s["no_input"] for s in graph["sets"] if s["role"] == "hidden")
    tally = {"hh": 0, "hh_candidates": 0, "to_out": 0, "from_in": 0}
    for b in graph["blocks"]:
        src, dst = role[b["source"]], role[b["target"]]
        if src == dst == "hidden":
            tally["hh"] += b["active"]
            tally["hh_candidates"] += b["candidates"]
        tally["to_out"] += b["active"] if dst == "output" else 0
        tally["from_in"] += b["active"] if src == "input" else 0
    return _row(
        run.name,
        graph["wiring"],
        graph["active_edges"],
        graph["candidates"],
        tally,
        hidden_no_input,
    )


def authors_roles(run: Path) -> dict:
    """The authors' graph is a 1x1 conv weight (target, source); DNW keeps its k largest |w|, the
    random graph multiplies by a fixed mask."""
    state = torch.load(run / "last.pt", weights_only=True)["model"]
    weight = state["graph.weight"].squeeze()
    if "graph.mask" in state:
        active, wiring = state["graph.mask"].squeeze() != 0, "random"
    else:
        k = weight.numel() - int(0.95 * weight.numel())  # their prune rate: keep 5%
        flat = weight.abs().flatten()
        active = torch.zeros_like(flat, dtype=torch.bool)
        active[flat.topk(k).indices] = True
        active, wiring = active.view_as(weight), "dnw"
    n = weight.shape[0]
    hidden = torch.zeros(n, dtype=torch.bool)
    hidden[AUTHORS_INPUTS : n - AUTHORS_OUTPUTS] = True
    hh = active[hidden][:, hidden]
    tally = {
        "hh": int(hh.sum()),
        "hh_candidates": int(hidden.sum()) ** 2,
        "to_out": int(active[n - AUTHORS_OUTPUTS :].sum()),
        "from_in": int(active[:, :AUTHORS_INPUTS].sum()),
    }
    no_input = int((active[hidden].sum(1) == 0).sum())
    return _row(run.name, wiring, int(active.sum()), n * n, tally, no_input)


def _row(name: str, wiring: str, k: int, candidates: int, t: dict, no_input: int) -> dict:
    return {
        "run": name,
        "wiring": wiring,
        "k": k,
        "hidden_to_hidden": t["hh"],
        "hidden_to_hidden_share": round(t["hh"] / k, 4),
        "uniform_share": round(t["hh_candidates"] / candidates, 4),
        "into_outputs": t["to_out"],
        "out_of_inputs": t["from_in"],
        "hidden_with_no_input": no_input,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*", type=Path, help="wirelang run directories")
    p.add_argument("--authors", nargs="*", type=Path, default=[], help="authors_dnw.py run dirs")
    args = p.parse_args(argv)
    rows = [wirelang_roles(r) for r in args.runs] + [authors_roles(r) for r in args.authors]
    print(
        "| run | wiring | k | hidden -> hidden (share) | uniform share | into outputs "
        "| out of inputs | hidden nodes with no input |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['run']} | {r['wiring']} | {r['k']:,} | {r['hidden_to_hidden']:,} "
            f"({100 * r['hidden_to_hidden_share']:.1f}%) | {100 * r['uniform_share']:.1f}% "
            f"| {r['into_outputs']:,} | {r['out_of_inputs']:,} | {r['hidden_with_no_input']} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
