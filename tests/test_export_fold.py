"""The compact model folds batch norms into the linear maps before them (`compact.Affine`):
into a conv, into the rows of the edge product feeding a set, and across items (a graph's
input sets into the layer before the graph, the head's into the graph before it). With every
batch norm's statistics and affine made non-trivial, the folded model, its pt2, ONNX and
Python programs compute what the masked model computes."""

from __future__ import annotations

import re

import pytest
import torch

import wirelang
from wirelang.export import compact
from wirelang.export.compact import plan_network
from wirelang.export.standalone import instantiate, render

FOLD = """\
network f {
  input image(3, 8, 8)
  classes 4

  stem {
    conv(8, k=3), batchnorm, relu
    conv(6, k=3), batchnorm
  }

  graph g1 {
    nodes a[6] input op(batchnorm, relu, dwconv(k=3))
    nodes h[5] * 2 op(batchnorm, relu, dwconv(k=3))
    nodes o[7] output
    edges forward(a, h, o)
    budget 40
    wiring dnw
  }

  graph g2 {
    nodes a[7] input op(batchnorm, relu, dwconv(k=3, stride=2))
    nodes o[5] output
    edges forward(a, o)
    budget 20
    wiring dnw
  }

  head {
    batchnorm, relu, avgpool, linear(classes)
  }
}
"""

# the stem ends with a ReLU: the graph's input batch norm has nothing linear before it and
# stays; the output set's batch norm follows its product and folds
KEPT = """\
network k {
  input image(3, 8, 8)
  classes 4

  stem {
    conv(6, k=3), batchnorm, relu
  }

  graph g {
    nodes a[6] input op(batchnorm, relu, dwconv(k=3))
    nodes h[5] op(batchnorm, relu, dwconv(k=3))
    nodes o[4] output op(batchnorm)
    edges forward(a, h, o)
    budget 30
    wiring dnw
  }

  head {
    avgpool, linear(classes)
  }
}
"""


def model_of(tmp_path, text: str, name: str):
    path = tmp_path / f"{name}.wire"
    path.write_text(text)
    model = wirelang.load(path).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # statistics and affine maps far from the identity
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.7, generator=g)
                m.running_var.uniform_(0.3, 3.0, generator=g)
                m.weight.uniform_(0.4, 1.8, generator=g)
                m.bias.normal_(0.0, 0.5, generator=g)
    return model


def batch(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("below", [0.0, 1.0])
def test_every_batch_norm_folds_and_the_model_agrees(tmp_path, monkeypatch, below):
    """Dense blocks (threshold 0: rows of a matrix scaled) and gathered ones (1: each live
    entry by its row's scale); no batch norm is left in the compact model."""
    model = model_of(tmp_path, FOLD, "fold")
    monkeypatch.setitem(compact.SPARSE_BELOW, "cpu", below)
    plan = plan_network(model.net, model)
    source = render(plan)
    assert "BatchNorm2d(" not in source.split("class Model")[1]  # none in the model's layers
    assert "nn.BatchNorm2d(" not in re.sub(r"isinstance\(layer, nn.BatchNorm2d\)", "", source)
    # the stem's convs took their batch norms (and the first graph's input one): a bias each
    assert plan.items[0][1].count("bias=True") == 2
    # each graph: products into sets with a batch norm carry its shift; the first graph's
    # output rows carry the second graph's input batch norm, the second's the head's
    assert [sorted(g.biased) for g in plan.graphs] == [["w_h_1", "w_h_2", "w_o"], ["w_o"]]
    compact_model = instantiate(plan)
    with torch.no_grad():
        expected = model(batch())
        assert float(expected.std()) > 0.05  # the scores are not all alike
        torch.testing.assert_close(compact_model(batch()), expected, atol=1e-5, rtol=1e-5)


def test_a_batch_norm_with_nothing_linear_before_it_stays(tmp_path):
    model = model_of(tmp_path, KEPT, "kept")
    plan = plan_network(model.net, model)
    source = render(plan)
    # the stem's batch norm folds into its conv; the input set's stays (a ReLU precedes it)
    assert re.findall(r"self\.(\w+) = NodeOps\(nn\.BatchNorm2d", source) == ["op_a"]
    assert len(re.findall(r"nn\.BatchNorm2d\(\d", source)) == 1
    assert sorted(plan.graphs[0].biased) == ["w_h", "w_o"]
    with torch.no_grad():
        torch.testing.assert_close(instantiate(plan)(batch()), model(batch()), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fmt,out", [("pt2", "f.pt2"), ("onnx", "f.onnx"), ("python", "py")])
def test_folded_artifacts_agree_with_the_model(tmp_path, fmt, out):
    model = model_of(tmp_path, FOLD, "fold")
    x = batch(4)
    report = wirelang.export(model, fmt, example=x, out=tmp_path / out)
    assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["max_abs_output"])
    assert report["max_abs_output"] > 0.1


def test_merged_products_agree_with_blocks(tmp_path, monkeypatch):
    """A set fed by several gathered blocks of small maps runs them as one product over its
    stacked sources (`MERGE_BELOW`); for a larger batch, and in a pt2 program, block by block.
    Both give the masked model's scores."""
    model = model_of(tmp_path, FOLD, "fold")
    monkeypatch.setitem(compact.SPARSE_BELOW, "cpu", 1.0)  # every block gathered
    plan = plan_network(model.net, model)
    # g1's h.2 and o read two and three sets; g2's o reads one
    assert [sorted(g.merged) for g in plan.graphs] == [["w_h_2", "w_o"], []]
    module = instantiate(plan)
    (w_o,) = [m for name, m in module.named_modules() if name == "g1.w_o"]
    per_image = w_o.width * 8 * 8
    assert plan.merge_below >= 5 * per_image  # batch 5 runs merged, batch 400 does not
    calls = []
    monkeypatch.setattr(
        torch.nn.functional, "embedding_bag", _counting(torch.nn.functional.embedding_bag, calls)
    )
    with torch.no_grad():
        for n in (5, plan.merge_below // per_image + 1):
            x = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(n))
            calls.clear()
            torch.testing.assert_close(module(x), model(x), atol=1e-5, rtol=1e-5)
            merged_call = any(width == w_o.width for width in calls)
            assert merged_call == (n == 5), (n, calls)
    report = wirelang.export(model, "pt2", example=batch(4), out=tmp_path / "m.pt2")
    assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["max_abs_output"])


def _counting(fn, calls):
    def wrapped(index, weight, *args, **kwargs):
        calls.append(weight.shape[0])  # the rows of the sources the call gathers from
        return fn(index, weight, *args, **kwargs)

    return wrapped
