"""`wirelang export`: the frozen .wire and the compact model compute what the trained model does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from export_runs import make_run
from typer.testing import CliRunner

import wirelang
from wirelang.cli.commands import app
from wirelang.export.compact import ExportRefused, fixed_step_reference, plan_network
from wirelang.export.frozen import frozen_wire
from wirelang.export.nodes import kept_nodes
from wirelang.export.programs import export_run
from wirelang.export.standalone import instantiate
from wirelang.fmt import format_text
from wirelang.frontend import check_file
from wirelang.runs.load import load_run

ROOT = Path(__file__).resolve().parents[1]


def spec(
    graph: str, layers: str = "", head: str = "avgpool, linear(classes)", extra: str = ""
) -> str:
    return textwrap.dedent(f"""\
    network n {{
      input image(3, 8, 8)
      classes 4

      stem {{
        conv(6, k=3), batchnorm, relu
      }}
    {textwrap.indent(layers, "  ")}
      graph body {{
    {textwrap.indent(textwrap.dedent(graph), "    ")}
      }}

      head {{
        {head}
      }}
    {textwrap.indent(extra, "  ")}
    }}
    """)


SPECS = {
    # a DAG with a send operator, edges skipping sets, and a set group (h.1, h.2)
    "static": spec("""\
        nodes a[6] input op(instancenorm, relu, dwconv(k=3))
        nodes h[5] * 2 op(instancenorm, relu, dwconv(k=3)) send(relu)
        nodes o[4] output op(batchnorm)
        edges forward(a, h, o)
        budget 25
        wiring dnw
    """),
    # cycles and self loops, an input set that only sends, 3 steps
    "discrete": spec("""\
        nodes a[3] input op(instancenorm, relu, dwconv(k=3))
        nodes g[3] input
        nodes h[5] op(instancenorm, relu, dwconv(k=3)) send(relu)
        nodes o[4] output op(batchnorm)
        edges all(a, h, o, self_loops=true)
        edges g -> h
        budget 14
        wiring dnw
        semantics discrete(steps=3)
    """),
    # residual blocks, sparse layers (a sparse block with an exclusion, a per-layer budget), random wiring
    "sparse": spec(
        """\
        nodes a[8] input op(batchnorm, relu, dwconv(k=3))
        nodes h[6] op(batchnorm, relu, dwconv(k=3))
        nodes o[5] output
        edges forward(a, h, o)
        budget 12
        wiring random(seed=2)
    """,
        layers="""\
residual r1 {
  branch {
    conv(6, k=3), batchnorm, relu
    conv(8, k=3, stride=2), batchnorm
  }
  shortcut {
    conv(8, k=1, stride=2), batchnorm
  }
  after relu
}
""",
        head="avgpool, linear(classes, sparse=50%)",
        extra="""\
sparse {
  layers conv, linear
  exclude stem.0
  budget 30%
  wiring dnw
}
""",
    ),
    # sparse layers under a method whose mask is a stored buffer, not a function of the weights
    "sparse_random": "",
    # names made by a template use and a repeat (`st.g_0`, `st.b.0`): frozen as `st_g_0`, ...
    "template": textwrap.dedent("""\
    template stage(width) {
      layers b {
        conv(width, k=1), batchnorm
      }
      repeat 2 as i {
        graph g {
          nodes a[width] input op(batchnorm, relu, dwconv(k=3))
          nodes h[3] * 2 op(batchnorm, relu, dwconv(k=3))
          nodes o[width] output
          edges forward(a, h, o)
          budget 10
        }
      }
    }

    network t {
      input image(3, 8, 8)
      classes 4
      use stage(5) as st
      head {
        avgpool, linear(classes)
      }
    }
    """),
    "continuous": spec("""\
        nodes a[6] input op(instancenorm, relu, dwconv(k=3))
        nodes h[5] op(instancenorm, relu, dwconv(k=3))
        nodes o[4] output
        edges all(a, h, o, self_loops=true)
        budget 20
        wiring dnw
        semantics continuous(time=0.5, solver=dopri5, rtol=1e-2, atol=1e-2)
    """),
}


SPECS["sparse_random"] = SPECS["sparse"].replace("wiring dnw\n}", "wiring random(seed=1)\n}")
assert SPECS["sparse_random"] != SPECS["sparse"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, text in SPECS.items():
        path = root / f"{name}.wire"
        path.write_text(text)
        out[name] = make_run(root, path, name=name)
    return out


def batch(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    # float32 sums in another order (fewer, reordered terms; another runtime's kernels)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "name", ["static", "discrete", "sparse", "sparse_random", "template", "continuous"]
)
def test_frozen_wire_round_trip(runs, name, tmp_path):
    run = load_run(runs[name])
    text = frozen_wire(run.net, run.model, run.label, run.train)
    path = tmp_path / "frozen.wire"
    path.write_text(text)
    assert check_file(path) == []
    assert format_text(text) == text  # canonical under `wirelang fmt`
    assert (
        not re.search(r"^\s*(include|template|use|let|repeat)\b", text, re.M)
        and "wiring fixed {" in text
    )
    frozen = wirelang.load(path, weights=runs[name]).eval()
    trained = wirelang.load(runs[name]).eval()
    assert sorted(frozen.state_dict()) == sorted(trained.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(frozen(batch()), trained(batch()), atol=0, rtol=0)
    # graph `st.g_0` is frozen as `st_g_0`: the same module, so the same learned edges
    edges = [sorted(trained.graph_parts(g.name).wiring.edges(g)) for g in trained.net.graphs()]
    assert [
        sorted(frozen.graph_parts(g.name).wiring.edges(g)) for g in frozen.net.graphs()
    ] == edges


@pytest.mark.parametrize("name", ["static", "discrete", "sparse"])
def test_compact_model_equals_the_trained_one(runs, name):
    run = load_run(runs[name])
    plan = plan_network(run.net, run.model, run.label)
    compact = instantiate(plan)
    (g,) = plan.graphs
    assert g.nodes[0] < g.nodes[1] and g.edges[0] <= g.edges[1]  # something was removed
    assert sum(p.numel() for p in compact.parameters()) < sum(
        p.numel() for p in run.model.parameters()
    )
    with torch.no_grad():
        close(compact(batch()), run.model(batch()))


def test_gathered_products_run_the_forward_only_kernel_in_inference(runs):
    # without autograd the live weights go in detached, so embedding_bag skips the bookkeeping
    # of its backward; with autograd the exported model still trains (fine-tuning): every
    # block, also those a `merged` list copies for inference, gets its gradient
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(func.__name__)
            return func(*args, **(kwargs or {}))

    run = load_run(runs["sparse"])
    plan = plan_network(run.net, run.model, run.label)
    assert any(any(gathered) for _, _, _, gathered in plan.graphs[0].weights)
    compact = instantiate(plan)
    for grad, kernel in ((False, "_embedding_bag_forward_only"), (True, "_embedding_bag")):
        with torch.set_grad_enabled(grad), Ops() as ops:
            y = compact(batch())
        assert {n.split(".")[0] for n in ops.names} & {
            "_embedding_bag_forward_only",
            "_embedding_bag",
        } == {kernel}
    y.sum().backward()
    values = [p for name, p in compact.named_parameters() if ".val" in name]
    assert values and all(p.grad is not None and p.grad.abs().sum() > 0 for p in values)
    # after a fine-tuning step, inference (merged lists where they pay) computes with the
    # trained weights, as the block-by-block products with autograd on do
    assert any(e.merged for e in compact.modules() if hasattr(e, "merged"))
    torch.optim.SGD(compact.parameters(), lr=0.5).step()
    with torch.no_grad():
        inferred = compact(batch())
    close(inferred, compact(batch()).detach())


def test_compact_removes_exactly_the_dead_nodes(tmp_path):
    from test_inspect import HAND, hand_edges

    path = tmp_path / "hand.wire"
    path.write_text(HAND)
    run = load_run(make_run(tmp_path, path, model_hook=hand_edges))
    (g,) = plan_network(run.net, run.model).graphs
    # a2 (no outgoing edge) and h1 (no outgoing edge) go; a0, a1, h0 and both outputs stay
    assert g.nodes == (5, 7) and g.edges == (4, 4)
    # a block per source set with a live edge: h <- a (1 x 2), o <- a (2 x 2) and h (2 x 1);
    # half their entries are live, far above the density where a sparse product pays
    assert g.weights == [("w_h", 1, (2,), (False,)), ("w_o", 2, (2, 1), (False, False))]


def test_depthwise_sets_round_up_to_the_channel_block(tmp_path):
    # MobileNetV1-DNW, perturbed weights: stage 1's input set keeps 28 of 32 channels, stage
    # 2's first hidden set 118 of 128; on the CPU both run their depthwise convs on 32 and 128
    # channels (more of the input's own channels; zero rows after the hidden set's kept ones)
    from export_runs import perturb

    from wirelang.backend.api import compile_network
    from wirelang.frontend import build

    torch.manual_seed(0)
    net = build(ROOT / "specs/mbv1_dnw.wire")
    model = compile_network(net)
    perturb(model)
    model.eval()
    plans = {d: plan_network(net, model, device=d) for d in ("cpu", "cuda")}
    s1, s2 = plans["cpu"].graphs[:2]
    assert s1.init[1] == ("s_in", "self.op_in(x[0:32])") and not s1.buffers
    assert s2.weights[0][:3] == ("w_h_1", 128, (64,))
    assert [g.nodes for g in plans["cpu"].graphs[:2]] == [(92, 96), (310, 320)]
    # no channel block on CUDA (not measured): the kept nodes as they are
    c1, c2 = plans["cuda"].graphs[:2]
    assert c1.init[1] == ("s_in", "self.op_in(x.index_select(0, self.idx_in))")
    assert c2.weights[0][:2] == ("w_h_1", 118)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)
        for plan in plans.values():
            got = instantiate(plan)(x)
            # outputs of ~1e10 after the perturbed weights: float32 rounding, relative
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max())


PADDED = """\
network padded {
  input image(3, 8, 8)
  classes 4
  stem {
    conv(32, k=3)
  }
  graph g {
    nodes a[32] input op(batchnorm, relu, dwconv(k=3))
    nodes h[40] op(batchnorm, relu, dwconv(k=3))
    nodes o[6] output
    edges forward(a, h, o)
    budget 300
  }
  head {
    avgpool, linear(classes)
  }
}
"""


def kill_some(model) -> None:
    """No edge leaves a0-a3 or h0-h5 (DNW takes the largest weights; these are 0)."""
    wiring = model.graph_parts("g").wiring
    with torch.no_grad():
        wiring.w_0[:, :4] = 0  # h <- a
        wiring.w_1[:, :4] = 0  # o <- a
        wiring.w_1[:, 32:38] = 0  # o <- h


def test_padded_sets_export_equal_to_the_trained_model(tmp_path):
    path = tmp_path / "padded.wire"
    path.write_text(PADDED)
    run = load_run(make_run(tmp_path, path, model_hook=kill_some))
    kept, _ = kept_nodes(run.model, run.net.graphs()[0])
    a, h = int(kept[:32].sum()), int(kept[32:72].sum())
    assert a == 28 and 17 <= h <= 34  # h: at least 6 dead, and padding to 48 pays
    (g,) = plan_network(run.net, run.model).graphs
    assert g.init[1] == ("s_a", "self.op_a(x[0:32])")  # all of a: no gather
    assert g.weights[0][:3] == ("w_h", 48 if h > 32 else 32, (32,))
    for fmt, out in [("pt2", "m.pt2"), ("onnx", "m.onnx"), ("python", "py")]:
        report = export_run(run, fmt, tmp_path / out, batch=3, latency_s=0.01)
        assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["max_abs_output"]), fmt


@pytest.mark.parametrize(
    "head, moved, left",
    [
        (
            "batchnorm, relu, avgpool, linear(classes)",
            2,
            "nn.Sequential(FlatLinear(6, 4, bias=True))",
        ),
        ("avgpool, linear(classes)", 1, "nn.Sequential(FlatLinear(6, 4, bias=True))"),
        ("conv(8, k=1), avgpool, linear(classes)", 0, None),  # a conv mixes channels: stays
    ],
)
def test_a_head_pool_runs_in_the_graph_layout(tmp_path, head, moved, left):
    # the head's per-map layers up to its pool run at the end of the graph, before the copy
    # to N x C x H x W (a batch norm right after the graph folds into its output rows first)
    path = tmp_path / "head.wire"
    path.write_text(PADDED.replace("avgpool, linear(classes)", head))
    run = load_run(make_run(tmp_path, path, model_hook=kill_some))
    plan = plan_network(run.net, run.model)
    (g,) = plan.graphs
    tail = [source for attr, source in g.modules if attr == "tail"]
    assert len(tail) == (moved > 0)
    if moved:
        assert tail[0].count("nn.") == moved and g.output == "swap_nc(self.tail(s_o))"
        assert dict(plan.items)["head"] == left
    else:
        assert g.output == "swap_nc(s_o)"
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        close(instantiate(plan)(x), run.model(x))


def test_continuous_needs_a_fixed_step_solver(runs, tmp_path):
    result = CliRunner().invoke(
        app,
        ["export", str(runs["continuous"]), "--format", "pt2", "--out", str(tmp_path / "m.pt2")],
    )
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "error: graph `body` runs in continuous time with the solver `dopri5`, which is not a fixed program; "
        "pass --solver euler|midpoint|rk4 --steps N to export it with that fixed-step solver unrolled"
    ]
    assert not (tmp_path / "m.pt2").exists()
    run = load_run(runs["continuous"])
    with pytest.raises(ExportRefused):
        plan_network(run.net, run.model)
    for solver in ("euler", "midpoint", "rk4"):
        compact = instantiate(plan_network(run.net, run.model, solver=solver, steps=3))
        with torch.no_grad():
            close(compact(batch()), fixed_step_reference(run.net, run.model, solver, 3)(batch()))


def test_continuous_with_a_fixed_step_solver_exports_as_trained(tmp_path):
    # 0.3 does not divide 0.5: torchdiffeq's grid ends with a shorter step, and so must the export
    path = tmp_path / "rk4.wire"
    path.write_text(
        SPECS["continuous"].replace(
            "solver=dopri5, rtol=1e-2, atol=1e-2", "solver=rk4, step_size=0.3"
        )
    )
    run = load_run(make_run(tmp_path, path))
    plan = plan_network(run.net, run.model)
    assert plan.graphs[0].mode == "rk4" and len(plan.graphs[0].dts) == 2
    with torch.no_grad():
        close(instantiate(plan)(batch()), run.model(batch()))


LOAD_WITHOUT_WIRELANG = """
import sys, torch
x, expected = torch.load("io.pt")
got = {}
got["pt2"] = torch.export.load("m.pt2").module()(x)
import onnxruntime
session = onnxruntime.InferenceSession("m.onnx", providers=["CPUExecutionProvider"])
got["onnx"] = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
sys.path.insert(0, "py")
from model import load
got["python"] = load("py/weights.pt")(x)
assert "wirelang" not in sys.modules, "wirelang was imported"
for name, y in got.items():
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5, msg=name)
print("ok", sorted(got))
"""


def test_compact_artifacts_load_without_wirelang(runs, tmp_path):
    run = load_run(runs["discrete"])
    reports = {
        fmt: export_run(run, fmt, tmp_path / out, batch=4, latency_s=0.05)
        for fmt, out in [("pt2", "m.pt2"), ("onnx", "m.onnx"), ("python", "py")]
    }
    for report in reports.values():
        assert report["max_abs_diff"] <= 1e-5 * max(1.0, report["max_abs_output"])
        assert report["compact"]["params"] < report["masked"]["params"]
        assert report["compact"]["params_nonzero"] <= report["masked"]["params_paper"]
    x = batch(7)  # another batch size than the export's: the batch dimension is dynamic
    with torch.no_grad():
        torch.save((x, run.model(x)), tmp_path / "io.pt")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_WIRELANG], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok ['onnx', 'pt2', 'python']"


def test_edges_json(runs, tmp_path):
    result = CliRunner().invoke(
        app, ["export", str(runs["static"]), "--format", "edges", "--out", str(tmp_path / "e.json")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "e.json").read_text())
    run = load_run(runs["static"])
    (g,) = run.net.graphs()
    assert len(data["edges"]) == 25
    assert {
        (e["source"], e["source_index"], e["target"], e["target_index"]) for e in data["edges"]
    } == {e[:4] for e in run.model.graph_parts("body").wiring.edges(g)}
    assert {e["graph"] for e in data["edges"]} == {"body"}


REAL = """\
network real {
  input image(3, 8, 8)
  classes 4

  stem {
    conv(6, k=3), batchnorm, relu
  }

  graph body {
    nodes a[6] input op(instancenorm, relu, dwconv(k=3))
    nodes h[8] op(instancenorm, relu, dwconv(k=3))
    nodes o[6] output
    edges forward(a, h, o)
    budget 30
    wiring dnw
  }

  head {
    avgpool, linear(classes)
  }

  train {
    data synthetic(size=64)
    batch 32
    epochs 2
    seed 1
  }
}
"""


def test_a_run_written_by_wirelang_train(tmp_path):
    spec_path, run_dir = tmp_path / "real.wire", tmp_path / "run"
    spec_path.write_text(REAL)
    runner = CliRunner()
    trained = runner.invoke(app, ["train", str(spec_path), "--out", str(run_dir)])
    assert trained.exit_code == 0, trained.output
    info = json.loads(runner.invoke(app, ["inspect", str(run_dir), "--json"]).output)
    assert info["graphs"][0]["active_edges"] == 30 and len(info["churn"]["body"]) == 2
    run = load_run(run_dir)
    model = wirelang.load(run_dir).eval()  # the same checkpoint as every export command
    assert run.checkpoint.name == "best.pt"
    frozen = tmp_path / "frozen.wire"
    assert (
        runner.invoke(
            app, ["export", str(run_dir), "--format", "wire", "--out", str(frozen)]
        ).exit_code
        == 0
    )
    with torch.no_grad():
        close(wirelang.load(frozen, weights=run_dir).eval()(batch()), model(batch()))
        close(instantiate(plan_network(run.net, run.model)).eval()(batch()), model(batch()))
