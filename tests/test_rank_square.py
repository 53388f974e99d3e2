"""`dnw(rank=square)`: DNW's top k over the graph's whole nodes x nodes square (the authors'
ranking), the entries that are not candidates holding fixed magnitudes and no edge."""

from __future__ import annotations

import textwrap

import torch

from wirelang.backend.api import compile_network
from wirelang.backend.masks import EdgeMask, topk_mask
from wirelang.frontend import build
from wirelang.ir.meaning import network_meaning, spec_hash

SPEC = """\
network n {{
  input image(4, 8, 8)
  classes 3
  graph g {{
    nodes a[4] input op(instancenorm, relu)
    nodes b[6] op(instancenorm, relu)
    nodes c[5] output
    edges forward(a, b, c)
    budget 20
    wiring {wiring}
    semantics static
  }}
  head {{ avgpool, linear(classes) }}
}}
"""


def net_of(tmp_path, wiring: str):
    path = tmp_path / "n.wire"
    path.write_text(textwrap.dedent(SPEC.format(wiring=wiring)))
    return build(path)


def the_mask(model) -> EdgeMask:
    return next(m for m in model.modules() if isinstance(m, EdgeMask))


def test_the_default_adds_nothing_to_the_network(tmp_path):
    plain, explicit = net_of(tmp_path, "dnw"), net_of(tmp_path, "dnw(rank=candidates)")
    # the typed IR holds the default; the network's data leaves it out, as before `rank` existed
    assert list(plain.graphs())[0].wiring.rank == "candidates"
    assert network_meaning(plain)["items"][0]["wiring"]["params"] == {}
    assert spec_hash(plain) == spec_hash(explicit)
    assert spec_hash(net_of(tmp_path, "dnw(rank=square)")) != spec_hash(plain)


def test_the_square_ranks_candidates_with_the_outside_entries(tmp_path):
    torch.manual_seed(0)
    model = compile_network(net_of(tmp_path, "dnw(rank=square)"))
    mask = the_mask(model)
    # 15 nodes: 225 entries, of which a->b, a->c, b->c are candidates (24 + 20 + 30 = 74)
    assert mask.outside.numel() == 15 * 15 - 74
    weights = mask.weights()
    scores = torch.cat([w.detach().abs().flatten() for w in weights])
    expected = topk_mask(torch.cat([scores, mask.outside]), 20)[: scores.numel()]
    got = torch.cat([m.flatten() for m in mask.active()])
    assert torch.equal(got, expected)
    assert int(got.sum()) < 20  # part of k sits outside: fewer edges than k at the start
    # once the candidates' weights outgrow every outside magnitude, all k are edges
    with torch.no_grad():
        for w in weights:
            w.mul_(1e3)
    assert sum(int(m.sum()) for m in mask.active()) == 20


def test_the_outside_magnitudes_follow_the_seed_not_the_weights(tmp_path):
    net = net_of(tmp_path, "dnw(rank=square)")
    torch.manual_seed(0)
    first = the_mask(compile_network(net)).outside
    torch.manual_seed(1)  # other candidate weights, the same outside entries
    second = the_mask(compile_network(net)).outside
    assert torch.equal(first, second)
    # drawn as the graph's default init draws: U(0, 1/sqrt(fan)), fan = 10 sending nodes
    assert float(first.max()) <= 1 / 10**0.5 and float(first.min()) >= 0


def test_a_pooled_graph_cannot_rank_its_square(tmp_path):
    from wirelang.diagnostics import SpecError

    path = tmp_path / "p.wire"
    path.write_text(
        textwrap.dedent(
            SPEC.format(wiring="dnw(rank=square)")
            .replace("budget 20", "budget pooled p")
            .replace("  classes 3\n", "  classes 3\n  pool p 20\n")
        )
    )
    try:
        build(path)
    except SpecError as err:
        text = str(err)
    else:
        raise AssertionError("a pooled dnw(rank=square) graph was accepted")
    assert (
        "graph `g`: `dnw(rank=square)` ranks the graph's own square, so it needs the graph's "
        "own budget, not a pool's" in text
    )


def test_an_unknown_rank_is_a_located_error(tmp_path):
    from wirelang.diagnostics import SpecError

    try:
        net_of(tmp_path, "dnw(rank=everything)")
    except SpecError as err:
        (d,) = err.diagnostics
    else:
        raise AssertionError("rank=everything was accepted")
    assert (d.span.line, d.message) == (10, "`rank` cannot be `everything`")
    assert "candidates" in d.hint and "square" in d.hint
