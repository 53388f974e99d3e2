"""The paper's networks in specs/: every spec compiles, and its counts are the paper's.

Uses the front end and the cost model directly (no torch, no subprocess), plus one call of the
CLI as a round check.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from wirelang.cost import summary
from wirelang.diagnostics import SpecError
from wirelang.frontend import build
from wirelang.passes.load import read_spec
from wirelang.syntax import ast

SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC_FILES = sorted(SPECS.glob("*.wire"))
LIB_FILES = sorted((SPECS / "lib").glob("*.wire"))


@cache
def compiled(name: str) -> tuple:
    net = build(SPECS / f"{name}.wire")
    return net, summary(net)


def info(name: str) -> dict:
    return compiled(name)[1]


# ---------------------------------------------------------------- every file


def test_the_corpus_is_there():
    names = {p.stem for p in SPEC_FILES}
    assert {
        "cifar_tiny",
        "fmnist_tiny_continuous_random",
        "mbv1_dnw",
        "mbv1_cifar_complete",
        "resnet50_dense",
    } <= names
    assert len(SPEC_FILES) == 39  # with cifar_tiny_continuous_authors_order (4fa324d)
    assert {p.name for p in LIB_FILES} >= {"tiny.wire", "mobilenet.wire", "resnet.wire"}


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_spec_checks_and_compiles(path: Path):
    _net, out = compiled(path.stem)  # `build` raises SpecError with every problem found
    assert out["name"] == path.stem, "a spec's network is named after its file"
    assert out["params"] > 0 and out["macs"] > 0
    json.dumps(out)  # the summary is plain JSON


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_spec_starts_with_a_one_line_description(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# ") and len(lines[0]) > 20
    assert not lines[1].startswith("#"), "the description is one line"


@pytest.mark.parametrize("path", LIB_FILES, ids=lambda p: p.stem)
def test_lib_files_hold_only_lets_templates_includes(path: Path):
    parsed = read_spec(path)
    assert parsed.items
    for item in parsed.items:
        assert isinstance(item, ast.LetStmt | ast.TemplateDecl | ast.IncludeDecl), (
            f"{path.name}: {type(item).__name__}"
        )
    with pytest.raises(SpecError, match="defines no `network`"):
        build(path)


# ---------------------------------------------------------------- tiny classifier

TINY = [
    f"{data}_tiny{variant}"
    for data in ("cifar", "fmnist")
    for variant in (
        "",
        "_random",
        "_discrete",
        "_discrete_random",
        "_continuous",
        "_continuous_random",
    )
]


def test_cifar_tiny_numbers():
    out = info("cifar_tiny")
    (g,) = out["graphs"]
    assert g["nodes"] == 800
    assert [(s["name"], s["size"], s["role"]) for s in g["sets"]] == [
        ("in", 32, "input"),
        ("h1", 192, "hidden"),
        ("h2", 192, "hidden"),
        ("h3", 192, "hidden"),
        ("h4", 92, "hidden"),
        ("out", 100, "output"),
    ]
    assert g["candidate_edges"] == 254_960
    assert g["budget"] == 32_000
    assert (g["semantics"], g["wiring"]) == ("static", "dnw")
    assert 40_000 < out["params"] < 43_000  # "about 41k parameters"


@pytest.mark.parametrize("name", TINY)
def test_tiny_variants(name: str):
    net, out = compiled(name)
    (g,) = out["graphs"]
    assert g["nodes"] == 800 and g["budget"] == 32_000
    cyclic = "discrete" in name or "continuous" in name
    assert g["candidate_edges"] == (800 * 800 if cyclic else 254_960)
    assert g["semantics"] == (
        "discrete" if "discrete" in name else "continuous" if "continuous" in name else "static"
    )
    assert g["wiring"] == ("random" if name.endswith("_random") else "dnw")
    (graph,) = net.graphs()
    if g["semantics"] == "discrete":
        assert graph.semantics.steps == 5
    if g["semantics"] == "continuous":
        p = graph.semantics
        assert (p.time, p.solver, p.rtol, p.atol) == (1.0, "dopri5", 1e-3, 1e-3)
    fmnist = name.startswith("fmnist")
    assert out["input"] == ([1, 28, 28] if fmnist else [3, 32, 32])
    assert all(s.in_hw == ((7, 7) if fmnist else (8, 8)) for s in graph.sets)
    train = net.train
    assert train["data"]["name"] == ("fashion_mnist" if fmnist else "cifar10")
    # CIFAR-10 as in the paper, on every training image; Fashion-MNIST (not in the paper) keeps a
    # validation split (wirelang's default, 10%)
    assert train["data"].get("val", 0.1) == (0.1 if fmnist else 0)
    assert (train["batch"], train["epochs"]) == (512, 160)
    assert train["optimizer"] == {
        **train["optimizer"],
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
    }
    assert train["schedule"]["name"] == "multistep" and train["schedule"]["milestones"] == [80, 120]


# ---------------------------------------------------------------- MobileNetV1

STAGES = [(32, 64, 1, 1), (64, 128, 2, 2), (128, 256, 2, 2), (256, 512, 2, 6), (512, 1024, 2, 2)]
WIRED = {
    "mbv1_dnw": 0.225,
    "mbv1_dnw_x3": 0.3,
    "mbv1_dnw_x49": 0.49,
    "mbv1_dnw_small_x15": 0.15,
    "mbv1_dnw_small_x225": 0.225,
    "mbv1_random_x225": 0.225,
    "mbv1_random_x49": 0.49,
    **{
        f"mbv1_cifar_{m}": 0.225
        for m in (
            "random",
            "dnw",
            "no_update",
            "l1_anneal",
            "targeted_dropout",
            "lottery",
            "fine_tune",
            "complete",
        )
    },
}
METHOD = {"no_update": "dnw_no_update", "lottery": "lottery_one_shot"}


@pytest.mark.parametrize(
    ("name", "params", "macs"), [("mbv1_x25", 0.47, 41.0), ("mbv1_x5", 1.33, 149.5)]
)
def test_dense_mobilenet_counts(name: str, params: float, macs: float):
    out = info(name)
    assert round(out["params"] / 1e6, 2) == params
    assert round(out["macs"] / 1e6, 1) == macs
    assert out["graphs"] == []


def test_mobilenet_cifar_x25_is_the_dense_network_at_stride_1():
    net, out = compiled("mbv1_cifar_x25")
    assert out["graphs"] == [] and out["input"] == [3, 32, 32] and out["classes"] == 10
    assert net.items[0].params["stride"] == 1
    # the same weights as the ImageNet x0.25 network but for the 1000-way classifier
    assert out["params"] == info("mbv1_x25")["params"] - 256 * 990 - 990


@pytest.mark.parametrize("name", sorted(WIRED))
def test_mobilenet_stage_budgets_and_candidates(name: str):
    d = WIRED[name]
    out = info(name)
    graphs = out["graphs"]
    assert [g["name"] for g in graphs] == [f"mbv1.s{i}" for i in range(1, 6)]
    for g, (inp, oup, _stride, blocks) in zip(graphs, STAGES, strict=True):
        assert g["nodes"] == inp + oup * blocks
        cand = inp * oup * blocks + oup**2 * blocks * (blocks - 1) // 2
        assert g["candidate_edges"] == cand
        k = math.floor(inp * oup * d**2 + (blocks - 1) * oup**2 * d**2)
        assert g["budget"] == (cand if name.endswith("complete") else k)
        method = (
            name.removeprefix("mbv1_cifar_")
            if name.startswith("mbv1_cifar_")
            else name.split("_")[1]
        )
        assert g["wiring"] == METHOD.get(method, method)


@pytest.mark.parametrize("name", sorted(WIRED))
def test_mobilenet_shapes(name: str):
    net, out = compiled(name)
    imagenet = not name.startswith("mbv1_cifar")
    assert out["input"] == ([3, 224, 224] if imagenet else [3, 32, 32])
    assert out["classes"] == (1000 if imagenet else 10)
    side = 112 if imagenet else 32  # after the first conv
    for g, (_inp, _oup, stride, _blocks) in zip(net.graphs(), STAGES, strict=True):
        assert g.in_shape.height == side
        side //= stride
        assert g.out_shape.height == side
    assert side == (7 if imagenet else 2)


@pytest.mark.parametrize(
    ("name", "d"), [("mbv1_dnw_small_x15", 0.15), ("mbv1_dnw_small_x225", 0.225)]
)
def test_dnw_small_wires_the_linear_layer(name: str, d: float):
    (layer,) = info(name)["sparse_layers"]
    assert layer["op"] == "linear" and layer["wiring"] == "dnw"
    assert layer["candidates"] == 1024 * 1000
    assert layer["budget"] == math.floor(d * 1024 * 1000)


def test_mobilenet_recipes():
    for name in WIRED:
        train = compiled(name)[0].train
        if name.startswith("mbv1_cifar"):
            assert (
                train["data"]["name"],
                train["batch"],
                train["epochs"],
                train["optimizer"]["weight_decay"],
            ) == ("cifar10", 128, 160, 1e-4)
        else:
            assert (
                train["data"]["name"],
                train["batch"],
                train["epochs"],
                train["optimizer"]["weight_decay"],
            ) == ("imagenet", 512, 250, 5e-5)
        assert train["schedule"]["name"] == "cosine" and train["optimizer"]["lr"] == 0.1
        assert train["optimizer"]["name"] == "sgd" and train["optimizer"]["momentum"] == 0.9
        assert train["warmup"] == 0 and train["label_smoothing"] == 0
        assert train["data"]["val"] == 0  # every training image, as in the paper
    phase2 = compiled("mbv1_cifar_fine_tune")[0].train["phase2"]
    assert (
        phase2["optimizer"]["lr"] == 0.01 and phase2["epochs"] is None
    )  # None: as long as phase 1
    assert compiled("mbv1_cifar_targeted_dropout")[0].graphs()[0].wiring.rho == 0.95


# ---------------------------------------------------------------- ResNet-50

RESNETS = ["resnet50_dense"] + [
    f"resnet50_sparse_{v}{p}" for v in ("all", "first_dense") for p in (10, 20, 30)
]


def test_resnet50_dense_counts():
    out = info("resnet50_dense")
    assert compiled("resnet50_dense")[0].train["schedule"]["name"] == "cosine"
    assert abs(out["params"] - 25.56e6) / 25.56e6 < 0.01
    assert abs(out["macs"] - 4.09e9) / 4.09e9 < 0.02
    assert "sparse_layers" not in out


@pytest.mark.parametrize("name", RESNETS[1:])
def test_resnet50_sparse(name: str):
    net, out = compiled(name)
    pct = int(name[-2:])
    layers = {x["path"]: x for x in out["sparse_layers"]}
    first_dense = "first_dense" in name
    assert ("stem.0" in layers) is not first_dense
    assert len(layers) == 54 - first_dense  # 53 convolutions and the linear layer
    for layer in net.layers():
        if layer.op in ("conv", "linear") and layer.path in layers:
            x = layers[layer.path]
            assert x["budget"] == math.floor(pct / 100 * x["candidates"]) and x["wiring"] == "dnw"
    dense = info("resnet50_dense")
    # exactly the dense network minus the pruned weights: batch norm and biases stay dense
    assert out["params"] == dense["params"] - sum(
        x["candidates"] - x["budget"] for x in layers.values()
    )
    assert out["params"] < dense["params"] * (pct + 2) / 100
    train = net.train
    assert (train["batch"], train["epochs"], train["warmup"], train["label_smoothing"]) == (
        256,
        100,
        5,
        0.1,
    )
    assert train["schedule"]["name"] == "cosine" and train["optimizer"]["name"] == "sgd"
    assert train["data"]["val"] == 0
    assert (
        train["optimizer"]["lr"],
        train["optimizer"]["momentum"],
        train["optimizer"]["weight_decay"],
    ) == (0.256, 0.875, 3.0517578125e-5)


# ---------------------------------------------------------------- the CLI, once


def test_cli_compile_json_matches_the_library():
    run = subprocess.run(
        [sys.executable, "-m", "wirelang", "compile", "--json", str(SPECS / "cifar_tiny.wire")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == info("cifar_tiny")


# ---------------------------------------------------------------- methods as template parameters

HELD = """
template g(method, semantics) {
  graph {
    nodes in[3] input
    nodes out[10] output
    edges forward(in, out)
    budget 5
    wiring method
    semantics semantics
  }
}
network t {
  input image(3, 4, 4)
  classes 10
  use g(METHOD, semantics=continuous(time=2, solver=rk4)) as body
  head {
    avgpool
  }
}
"""


def test_wiring_and_semantics_held_by_template_parameters(tmp_path: Path):
    net = build(tmp_path / "t.wire", HELD.replace("METHOD", "targeted_dropout(rho=0.9)"))
    (g,) = net.graphs()
    assert g.wiring.method == "targeted_dropout" and g.wiring.rho == 0.9
    assert (
        g.semantics.kind == "continuous" and g.semantics.time == 2 and g.semantics.solver == "rk4"
    )
    assert (
        build(tmp_path / "t.wire", HELD.replace("METHOD", "random")).graphs()[0].wiring.method
        == "random"
    )


@pytest.mark.parametrize(
    ("method", "message"),
    [("dnww", "unknown wiring method `dnww`"), ("targeted_dropout(rho=2)", "must be at most 1")],
)
def test_a_bad_held_method_is_reported_at_the_use(tmp_path: Path, method: str, message: str):
    with pytest.raises(SpecError) as err:
        build(tmp_path / "t.wire", HELD.replace("METHOD", method))
    (diag,) = [d for d in err.value.diagnostics if message in d.message]
    assert diag.span.line == 15
