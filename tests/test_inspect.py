"""`wirelang inspect` and `wirelang draw` on runs whose answer is known by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from export_runs import make_run, save_checkpoint
from typer.testing import CliRunner

from wirelang.cli.commands import app
from wirelang.export.inspect import inspect_run
from wirelang.runs.load import load_run

# 2 input channels at 4x4; a[3] input, h[2] hidden, o[2] output; a->h (6), a->o (6), h->o (4).
HAND = """\
network hand {
  input image(2, 4, 4)
  classes 2

  stem {
    conv(3, k=1)
  }

  graph g {
    nodes a[3] input op(instancenorm, relu, dwconv(k=3))
    nodes h[2] op(instancenorm, relu, dwconv(k=3))
    nodes o[2] output
    edges forward(a, h, o)
    budget 4
    wiring dnw
  }

  head {
    avgpool, linear(classes)
  }
}
"""


def hand_edges(model) -> None:
    """Four strong edges: a0->h0, a0->o1, a1->o0, h0->o0; every other candidate is weak.
    w_0 is h's matrix (columns a0..a2), w_1 is o's (columns a0..a2, h0, h1)."""
    wiring = model.graph_parts("g").wiring
    with torch.no_grad():
        wiring.w_0.fill_(0.01)
        wiring.w_1.fill_(0.01)
        wiring.w_0[0, 0] = 1.0
        wiring.w_1[1, 0] = -1.0
        wiring.w_1[0, 1] = 1.0
        wiring.w_1[0, 3] = 1.0


@pytest.fixture
def hand_run(tmp_path):
    spec = tmp_path / "hand.wire"
    spec.write_text(HAND)
    return make_run(tmp_path, spec, model_hook=hand_edges)


def test_counts_match_a_hand_count(hand_run):
    info = inspect_run(load_run(hand_run))
    (g,) = info["graphs"]
    assert g["active_edges"] == g["budget"] == 4 and g["budget_met"]
    assert {(b["source"], b["target"]): b["active"] for b in g["blocks"]} == {
        ("a", "h"): 1,
        ("a", "o"): 2,
        ("h", "o"): 1,
    }
    sets = {s["name"]: s for s in g["sets"]}
    # out-degrees a: 2, 1, 0 (a2 dead); h: 1, 0 (h1 dead, and it has no input); o: 2 and 1 inputs
    assert (sets["a"]["dead"], sets["h"]["dead"], sets["o"]["dead"]) == (1, 1, 0)
    assert (sets["a"]["no_input"], sets["h"]["no_input"], sets["o"]["no_input"]) == (0, 1, 0)
    assert (
        sets["a"]["out_degree"] == {"min": 0, "mean": 1.0, "max": 2}
        and sets["a"]["in_degree"] is None
    )
    assert sets["h"]["in_degree"] == {"min": 0, "mean": 0.5, "max": 1}
    assert sets["o"]["in_degree"] == {"min": 1, "mean": 1.5, "max": 2}
    assert g["dead_nodes"] == 2 and g["no_input_nodes"] == 1 and g["live_nodes"] == 5
    # params: 4 edges + 3 live operator nodes x (2 norm + 9 conv) = 37
    # MACs at 4x4: 4 edges x 16 + 3 live nodes x 9 x 16 = 496
    assert (g["params"], g["macs"]) == (37, 496)
    # network: + stem conv 1x1 2->3 (6 params, 96 MACs) + linear 2->2 with bias (6 params, 4 MACs)
    assert (info["params"], info["macs"]) == (49, 596)
    assert info["churn"] == {"g": [7, 4, 1]} and info["epochs"] == 3


def test_cli_json_and_the_checkpoint_option(hand_run):
    # a last.pt with different edges: used only when named (best.pt is the default)
    state = load_run(hand_run).model.state_dict()
    state["gm.g.wiring.w_1"] = torch.eye(2, 5)  # a0->o0, a1->o1, plus h's edge a0->h0
    save_checkpoint(hand_run / "checkpoints" / "last.pt", state)
    runner = CliRunner()
    default = runner.invoke(app, ["inspect", str(hand_run), "--json"])
    assert default.exit_code == 0, default.output
    assert json.loads(default.output)["graphs"][0]["blocks"][1]["active"] == 2
    other = runner.invoke(
        app,
        [
            "inspect",
            str(hand_run),
            "--json",
            "--checkpoint",
            str(hand_run / "checkpoints" / "last.pt"),
        ],
    )
    assert other.exit_code == 0, other.output
    blocks = {
        (b["source"], b["target"]): b["active"]
        for b in json.loads(other.output)["graphs"][0]["blocks"]
    }
    assert blocks[("h", "o")] == 0 and blocks[("a", "o")] == 2
    text = runner.invoke(app, ["inspect", str(hand_run)])
    assert text.exit_code == 0 and "4 active edges = budget 4" in " ".join(text.output.split())


def test_inspect_a_missing_run_is_one_line_exit_1(tmp_path):
    result = CliRunner().invoke(app, ["inspect", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {tmp_path / 'nothing'} is not a run directory"
    ]


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_draw_a_spec_and_a_run(hand_run, tmp_path, suffix):
    runner = CliRunner()
    for source, name in [(hand_run / "spec.wire", "spec"), (hand_run, "run")]:
        out = tmp_path / f"{name}.{suffix}"
        result = runner.invoke(app, ["draw", str(source), "--out", str(out)])
        assert result.exit_code == 0, result.output
        data = out.read_bytes()
        if suffix == "png":
            assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
        else:
            assert b"<svg" in data[:1000] and data.rstrip().endswith(b"</svg>")


def test_draw_the_papers_size_aggregates(tmp_path):
    # 800 nodes, 32,000 edges: bands and a heat map instead of 32,000 lines
    from wirelang.export.draw import draw
    from wirelang.frontend import build

    out = draw(
        build(Path(__file__).parents[1] / "specs" / "cifar_tiny.wire"), tmp_path / "tiny.png"
    )
    assert out.stat().st_size > 20_000


def test_draw_refuses_other_formats(hand_run, tmp_path):
    result = CliRunner().invoke(app, ["draw", str(hand_run), "--out", str(tmp_path / "x.jpg")])
    assert result.exit_code == 2
    assert result.output.strip() == "error: cannot draw to x.jpg: the file must end in .png or .svg"
