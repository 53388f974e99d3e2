"""Per-member allocation of a pool's budget: `pool NAME 10% allocate=uniform|erk`.

The counts are checked against hand computations (ERK's densities, the dense cap, the largest
remainder), against the compiled model (each member's mask holds exactly its k; the compile
summary's parameters equal `count_params`), and through the CLI (the table and `--json`, the
error for an allocation that leaves a member nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_specs_run import POOLED as JOINT_POOL
from typer.testing import CliRunner

from wirelang import fmt
from wirelang.backend.api import compile_network
from wirelang.cli.commands import app
from wirelang.cost import member_ks, summary
from wirelang.frontend import build
from wirelang.ir.core import ALLOCATIONS
from wirelang.ir.meaning import spec_hash

# Three weights: a linear (10, 4) and two 3x3 convolutions (8, 4, 3, 3) and (16, 8, 3, 3).
# ERK's raw density is (sum of dims) / (product of dims), so a part's share at one eps is
# eps x (sum of its dims): 14, 18 and 30 for 40, 288 and 1,152 candidates.
LINEAR, CONV1, CONV2 = [((10, 4), 40)], [((8, 4, 3, 3), 288)], [((16, 8, 3, 3), 1152)]


def test_erk_by_hand_with_a_dense_layer():
    # k = 200: eps = 200 / (14 + 18 + 30) makes the linear layer's density 14 x eps / 40 = 1.13,
    # over 1: it is made dense (40) and eps is solved again over the convolutions:
    # 160 / (18 + 30), giving 18 x 10/3 = 60 and 30 x 10/3 = 100.
    assert member_ks(200, "erk", [LINEAR, CONV1, CONV2]) == [40, 60, 100]
    # k = 201: the convolutions share 161 as 60.375 and 100.625; the one weight left by the
    # floors goes to the larger remainder
    assert member_ks(201, "erk", [LINEAR, CONV1, CONV2]) == [40, 60, 101]
    # a small budget caps nothing: 62 weights at eps = 1 are exactly the sums of the dims
    assert member_ks(62, "erk", [LINEAR, CONV1, CONV2]) == [14, 18, 30]
    # the whole pool: every part dense
    assert member_ks(1480, "erk", [LINEAR, CONV1, CONV2]) == [40, 288, 1152]


def test_erk_caps_in_rounds():
    # a tiny layer is capped first; the eps solved over the rest then caps the next one too
    tiny, small, big = [((2, 2), 4)], [((6, 6), 36)], [((100, 100), 10_000)]
    # eps0 = 300 / (4 + 12 + 200) = 1.389: tiny's density 1.389 > 1 (dense), small's 0.46;
    # eps1 = 296 / 212 = 1.396: small 0.465, still under 1; big gets 200 x eps1 = 279.2
    assert member_ks(300, "erk", [tiny, small, big]) == [4, 17, 279]
    # k = 645: small's density is just under 1 at eps0 = 645 / 216 (0.995) and just over at
    # eps1 = 641 / 212 (1.008): it is capped in the second round, and big keeps 645 - 40
    assert member_ks(645, "erk", [tiny, small, big]) == [4, 36, 605]


def test_erk_of_a_graph_weighs_each_edge_block():
    # a graph member's parts are its blocks as (targets, sources): (4 + 8) / 32 and (2 + 4) / 8
    graph = [((4, 8), 32), ((2, 4), 8)]
    ks = member_ks(30, "erk", [graph, CONV2])
    # eps = 30 / (12 + 6 + 30): the blocks hold 18 x eps = 11.25, the conv 18.75
    assert ks == [11, 19] and sum(ks) == 30


def test_uniform_is_the_pools_fraction_of_each_member():
    assert member_ks(370, "uniform", [LINEAR, CONV1, CONV2]) == [10, 72, 288]  # 25% of each
    ks = member_ks(371, "uniform", [LINEAR, CONV1, CONV2])
    assert ks == [10, 72, 289] and sum(ks) == 371


@pytest.mark.parametrize("k", [1, 7, 100, 333, 1000, 1479])
@pytest.mark.parametrize("allocate", ["erk", "uniform"])
def test_counts_sum_to_the_pools_k_and_fit_each_member(k, allocate):
    members = [LINEAR, CONV1, CONV2, [((3, 5), 15), ((5, 5), 20)]]
    ks = member_ks(k, allocate, members)
    assert sum(ks) == k
    assert all(0 <= n <= sum(c for _, c in m) for n, m in zip(ks, members, strict=True))


THREE = """\
network three {{
  input image(4, 8, 8)
  classes 10
  pool w {budget} allocate={allocate}
  layers body {{
    conv(8, k=3), batchnorm, relu
    conv(16, k=3), batchnorm, relu
    avgpool, linear(classes)
  }}
  sparse {{
    layers conv, linear
    budget pooled w
    wiring {method}
  }}
}}
"""


def _write(tmp_path, text: str):
    path = tmp_path / "spec.wire"
    path.write_text(text)
    return path


def test_erk_spec_gives_each_layer_its_hand_computed_k(tmp_path):
    # weights (8, 4, 3, 3), (16, 8, 3, 3), (10, 16): dim sums 18, 30, 26 over 288, 1,152, 160.
    # k = 600: eps = 600 / 74 gives the linear layer a density of 26 x 8.1 / 160 = 1.32, so it
    # is dense (160); the convolutions share 440 as 18 x 440/48 = 165 and 30 x 440/48 = 275.
    path = _write(tmp_path, THREE.format(budget=600, allocate="erk", method="dnw"))
    net = build(path)
    assert net.pools[0].shares == {"body.0": 165, "body.3": 275, "body.7": 160}
    model = compile_network(net)
    active = {name: int(m.sum()) for name, m in model.active_masks().items()}
    assert active == net.pools[0].shares
    assert model.count_params() == summary(net)["params"]

    r = CliRunner().invoke(app, ["compile", "--json", str(path)])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert [(s["path"], s["budget"], s["pool"]) for s in info["sparse_layers"]] == [
        ("body.0", 165, "w"),
        ("body.3", 275, "w"),
        ("body.7", 160, "w"),
    ]
    assert info["pools"][0]["allocate"] == "erk" and info["pools"][0]["budget"] == 600
    r = CliRunner().invoke(app, ["compile", str(path)])
    table = r.stdout
    assert "pool w: 600 of 1,600 candidates over 3 members, allocated by erk" in table
    assert "165 (pool w)" in table and "275 (pool w)" in table and "160 (pool w)" in table


def test_uniform_spec_keeps_the_same_fraction_of_every_layer(tmp_path):
    path = _write(tmp_path, THREE.format(budget="37.5%", allocate="uniform", method="random"))
    net = build(path)
    assert net.pools[0].shares == {"body.0": 108, "body.3": 432, "body.7": 60}
    model = compile_network(net)
    assert {n: int(m.sum()) for n, m in model.active_masks().items()} == net.pools[0].shares


# A graph and sparse convolutions and a linear layer in one pool (as tests/test_specs_run.py's
# pooled network), allocated per member.
POOLED = JOINT_POOL.replace("pool shared 10%\n", "pool shared 10% allocate={allocate}\n")
assert "{allocate}" in POOLED


@pytest.mark.parametrize(
    "method", ["dnw", "random", "targeted_dropout(rho=0.5)", "l1_anneal", "lottery_one_shot"]
)
@pytest.mark.parametrize("allocate", ["erk", "uniform"])
def test_allocated_pool_params_equal_the_count(tmp_path, allocate, method):
    net = build(_write(tmp_path, POOLED.format(allocate=allocate, method=method)))
    pool = net.pools[0]
    assert sum(pool.shares.values()) == pool.budget.k == 1803
    model = compile_network(net)
    counted = summary(net)["params"]
    assert model.count_params() == counted
    masks = model.masks()
    assert {name: m.k for name, m in masks.items()} == pool.shares
    assert all(m.pool is None for m in masks.values())  # each ranks (or draws) its own k
    if method in ("l1_anneal", "lottery_one_shot"):
        return  # they start from every candidate and reach k later
    masked = {id(w) for m in masks.values() for w in m.weights()}
    dense = sum(p.numel() for p in model.parameters() if id(p) not in masked)
    active = {name: sum(int(a.sum()) for a in m.active()) for name, m in masks.items()}
    assert active == pool.shares
    assert dense + sum(active.values()) == counted


def test_each_member_keeps_its_k_while_training(tmp_path):
    net = build(_write(tmp_path, POOLED.format(allocate="erk", method="dnw")))
    model = compile_network(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = model.active_masks()
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3, 32, 32)).square().mean().backward()
        opt.step()
    after = model.active_masks()
    assert {n: int(m.sum()) for n, m in after.items()} == net.pools[0].shares
    assert any(not torch.equal(before[n], after[n]) for n in after)  # edges did swap


def test_an_allocation_that_leaves_a_member_nothing_is_an_error(tmp_path):
    # 2 weights shared uniformly by members of 288, 1,152 and 160 weights: 0.36, 1.44 and 0.2,
    # rounded to 0, 2 and 0
    path = _write(tmp_path, THREE.format(budget=2, allocate="uniform", method="dnw"))
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 2
    text = " ".join(r.stderr.split())
    assert (
        "spec.wire:4:3: error: pool `w` allocates its 2 weights by `uniform` and leaves 2 of its "
        "3 members without any: `body.0`, `body.7`"
    ) in text
    assert "help: raise the pool's budget, or give these members their own budget" in text
    assert "Traceback" not in r.output


def test_allocate_round_trips_through_fmt_and_names_the_network(tmp_path):
    text = THREE.format(budget="10%", allocate="erk", method="dnw")
    assert "pool w 10% allocate=erk\n" in fmt.format_text(text, "spec.wire")
    # `global` is the default, so writing it leaves the network (and its runs) unchanged; a
    # per-member allocation is another network
    glob = build(_write(tmp_path, text.replace("allocate=erk", "allocate=global")))
    plain = build(_write(tmp_path, text.replace(" allocate=erk", "")))
    erk = build(_write(tmp_path, text))
    assert spec_hash(glob) == spec_hash(plain) != spec_hash(erk)


@pytest.mark.parametrize("name", ALLOCATIONS)
def test_every_allocation_is_documented(name):
    doc = (Path(__file__).resolve().parents[1] / "docs" / "LANGUAGE.md").read_text()
    assert f"| `{name}`" in doc  # a row of the allocation table
