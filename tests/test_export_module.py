"""`wirelang.export` of any module: a sparsified torchvision ResNet-18 and a spec's model, as pt2,
ONNX and Python source, compared with the model they came from; `sparsify`'s budget semantics."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import onnx
import pytest
import torch
import torchvision
from typer.testing import CliRunner

import wirelang
from wirelang.backend.modules import SparseMixin
from wirelang.cli.commands import app
from wirelang.export import compact
from wirelang.export.compact import plan_network
from wirelang.export.dense import _build
from wirelang.export.fold import FoldRefused
from wirelang.export.standalone import instantiate

LOAD_WITHOUT_WIRELANG = """
import sys, torch
x, expected = torch.load("io.pt")
got = {"pt2": torch.export.load("r18.pt2").module()(x)}
import onnxruntime
session = onnxruntime.InferenceSession("r18.onnx", providers=["CPUExecutionProvider"])
got["onnx"] = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
sys.path.insert(0, "py")
from model import load
got["python"] = load("py/weights.pt")(x)
assert "wirelang" not in sys.modules, "wirelang was imported"
for name, y in got.items():
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5, msg=name)
print("ok", sorted(got))
"""


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = wirelang.sparsify(torchvision.models.resnet18(weights=None), budget=0.1)
    return model.eval()


def test_sparsified_resnet18_exports_to_pt2_onnx_and_python(resnet, tmp_path):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    state = {k: v.clone() for k, v in resnet.state_dict().items()}
    reports = {
        fmt: wirelang.export(resnet, fmt, example=x, out=tmp_path / out)
        for fmt, out in [("pt2", "r18.pt2"), ("onnx", "r18.onnx"), ("python", "py")]
    }
    for report in reports.values():
        assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["max_abs_output"])
        # 20 convs and the linear layer, each keeping floor(10%) of its weights
        assert report["sparse_layers"] == 21
        sparse = [m for m in resnet.modules() if isinstance(m, SparseMixin)]
        assert report["live_weights"] == sum(math.floor(0.1 * m.weight.numel()) for m in sparse)
    # the module is unchanged and still masked: export works on a copy
    assert not resnet.training and all(
        torch.equal(state[k], v) for k, v in resnet.state_dict().items()
    )
    # the programs hold plain weights: no mask, no top-k, zeros where the mask was off
    program = torch.export.load(str(tmp_path / "r18.pt2"))
    code = program.graph_module.code
    assert "kthvalue" not in code and "topk" not in code and "mask" not in code
    conv = program.state_dict["conv1.weight"]
    assert int(conv.count_nonzero()) == math.floor(0.1 * conv.numel())
    ops = {n.op_type for n in onnx.load(str(tmp_path / "r18.onnx")).graph.node}
    assert "TopK" not in ops and "Conv" in ops
    # each artifact on another batch size than the export's, without wirelang
    x7 = torch.randn(7, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.save((x7, resnet(x7)), tmp_path / "io.pt")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_WIRELANG], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok ['onnx', 'pt2', 'python']"


def test_a_model_in_training_mode_stays_in_it(tmp_path):
    model = wirelang.sparsify(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), budget=5)
    assert model.training
    report = wirelang.export(model, "pt2", example=torch.randn(2, 3, 6, 6), out=tmp_path / "m.pt2")
    assert model.training and report["live_weights"] == 5 and report["max_abs_diff"] == 0


def test_export_needs_an_example_and_an_out(resnet, tmp_path):
    with pytest.raises(ValueError, match="export needs `example`: an input batch for this model"):
        wirelang.export(resnet, "pt2", out=tmp_path / "m.pt2")
    with pytest.raises(ValueError, match="export needs `out`"):
        wirelang.export(resnet, "pt2", example=torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown format 'wire': choose one of pt2, onnx, python"):
        wirelang.export(resnet, "wire", example=torch.randn(1, 3, 64, 64), out=tmp_path / "m")


class Branchy(torch.nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x  # control flow on data: no single traced program


def test_python_source_needs_a_traceable_model(tmp_path):
    with pytest.raises(FoldRefused, match="format python needs a model torch.fx can trace"):
        wirelang.export(Branchy(), "python", example=torch.ones(2, 3), out=tmp_path / "py")
    assert not (tmp_path / "py").exists()


SPEC = """\
network small {
  input image(3, 8, 8)
  classes 4

  stem {
    conv(8, k=3), batchnorm, relu
  }

  graph body {
    nodes a[8] input op(batchnorm, relu, dwconv(k=3))
    nodes h[16] * 2 op(batchnorm, relu, dwconv(k=3))
    nodes o[8] output op(batchnorm)
    edges forward(a, h, o)
    budget 40
    wiring dnw
  }

  head {
    avgpool, linear(classes, sparse=50%)
  }
}
"""


def test_a_spec_model_exports_as_its_compact_model(tmp_path):
    path = tmp_path / "small.wire"
    path.write_text(SPEC)
    model = wirelang.load(path).eval()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    report = wirelang.export(model, "pt2", example=x, out=tmp_path / "s.pt2")
    assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["max_abs_output"])
    with torch.no_grad():
        got = torch.export.load(str(tmp_path / "s.pt2")).module()(x)
        torch.testing.assert_close(got, model(x), atol=1e-5, rtol=1e-5)
    # the CLI takes the spec itself (its initial wiring), not only a run folder; its ONNX
    # program runs the gathered blocks dense and still computes the same scores
    args = ["export", str(path), "--format", "onnx", "--out", str(tmp_path / "s.onnx")]
    result = CliRunner().invoke(app, [*args, "--batch", "4"])
    assert result.exit_code == 0, result.output
    assert "compact vs masked:" in result.output and "gathered blocks" in result.output
    assert "compact vs dense twin:" in result.output
    report = json.loads(CliRunner().invoke(app, [*args, "--batch", "4", "--json"]).output)
    assert report["graphs"][0]["products"]["sparse_blocks"] > 0
    # the dense twin: that network at one width, every graph complete, as many multiply-adds
    # as the learned wiring's live count (to the nearest whole widths), timed with the others
    live, dense = report["masked"]["macs_paper"], report["dense"]
    assert 0 < dense["factor"] < 1 and abs(dense["macs_paper"] - live) <= 0.05 * live
    assert _build(model.net, dense["factor"]).macs == dense["macs_paper"]
    assert report["dense"]["latency_ms"] > 0 and report["dense"]["latency_ms_batch1"] > 0
    assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["max_abs_output"])


@pytest.mark.parametrize("below", [0.0, 1.0])
def test_gathered_and_dense_products_agree(tmp_path, monkeypatch, below):
    """Every block dense (threshold 0) or every block gathered (1): the same model."""
    path = tmp_path / "small.wire"
    path.write_text(SPEC)
    model = wirelang.load(path).eval()
    monkeypatch.setitem(compact.SPARSE_BELOW, "cpu", below)
    plan = plan_network(model.net, model)
    forms = plan.graphs[0].forms()
    assert (forms["sparse_blocks"] == 0) == (below == 0.0) and (forms["dense_blocks"] == 0) == (
        below == 1.0
    )
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(instantiate(plan)(x), model(x), atol=1e-5, rtol=1e-5)
    live = sum(b.live for b in plan.graphs[0].blocks)
    # the kept edges (those reaching an output from a live node) are exactly the blocks' entries
    assert live == plan.graphs[0].edges[0] and 0 < live <= 40


# ----------------------------------------------------------------------------- sparsify's budget
def _live(model) -> list[int]:
    return [
        int(m.mask.folded()[0].count_nonzero())
        for m in model.modules()
        if isinstance(m, SparseMixin)
    ]


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 5)
    )


def test_sparsify_budget_means_what_its_docstring_says():
    # a float is a fraction of each layer: floor(0.1 * 216) = 21, floor(0.1 * 640) = 64
    assert _live(wirelang.sparsify(_net(), budget=0.1)) == [21, 64]
    # 1.0 keeps every weight; an int is a count per layer, so 1 keeps ONE weight per layer
    assert _live(wirelang.sparsify(_net(), budget=1.0)) == [216, 640]
    assert _live(wirelang.sparsify(_net(), budget=1)) == [1, 1]
    assert _live(wirelang.sparsify(_net(), budget=100)) == [100, 100]
    # pooled: one budget over all layers together, floor(0.1 * 856) = 85 in total
    assert sum(_live(wirelang.sparsify(_net(), budget=0.1, pooled=True))) == 85
    with pytest.raises(
        ValueError, match=r"budget must be a fraction in \(0, 1\] or an integer count, got 1.5"
    ):
        wirelang.sparsify(_net(), budget=1.5)
    assert "budget=1` keeps ONE weight" in wirelang.sparsify.__doc__


def test_sparsify_allocations_split_one_budget_as_a_spec_pool_does():
    from wirelang import cost

    # 10% of all 856 weights = 85, split by the same rule as `pool ... allocate=`
    shapes = [[((8, 3, 3, 3), 216)], [((5, 128), 640)]]
    for allocate in ("uniform", "erk"):
        live = _live(wirelang.sparsify(_net(), budget=0.1, allocate=allocate))
        assert live == cost.member_ks(85, allocate, shapes)
        assert sum(live) == 85
    assert _live(wirelang.sparsify(_net(), budget=0.1, allocate="uniform")) == [21, 64]
    # ERK: density ~ (sum of dims) / (product of dims): the linear layer's 133 / 640 beats the
    # conv's 17 / 216, so it is the denser one, unlike uniform's equal fractions
    erk = _live(wirelang.sparsify(_net(), budget=0.1, allocate="erk"))
    assert erk[1] / 640 > erk[0] / 216
    # global is pooled=True: one top-k over both layers
    glob = wirelang.sparsify(_net(), budget=0.1, allocate="global")
    ref = wirelang.sparsify(_net(), budget=0.1, pooled=True)
    assert _live(glob) == _live(ref) and sum(_live(glob)) == 85
    assert _live(wirelang.sparsify(_net(), budget=0.1, allocate="layer")) == [21, 64]


def test_sparsify_refuses_a_bad_allocation_and_leaves_the_model_alone():
    with pytest.raises(
        ValueError, match=r"^allocate must be one of layer, global, uniform, erk, got 'ERK'$"
    ):
        wirelang.sparsify(_net(), budget=0.1, allocate="ERK")
    with pytest.raises(
        ValueError,
        match=r"^pooled=True is allocate='global'; it cannot be combined with 'erk'$",
    ):
        wirelang.sparsify(_net(), budget=0.1, pooled=True, allocate="erk")
    # 2 weights over a 216-weight conv and a 640-weight linear layer: ERK rounds one to 0
    net = _net()
    with pytest.raises(ValueError, match=r"^allocate='erk' leaves '0' without a weight: "):
        wirelang.sparsify(net, budget=2, allocate="erk")
    assert not any(isinstance(m, SparseMixin) for m in net.modules())
