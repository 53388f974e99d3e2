"""The fast lowering against the node-by-node reference, and the mask rules."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest
import torch

from wirelang.backend.api import compile_network
from wirelang.backend.lower import safe
from wirelang.backend.masks import topk_mask
from wirelang.backend.reference import evaluate_graph
from wirelang.frontend import build

SEMANTICS = {
    "static": "static",
    "discrete": "discrete(steps=3)",
    "continuous": "continuous(time=1, solver=rk4, step_size=0.5)",
}
METHODS = [
    "dnw",
    "dnw_no_update",
    "random(seed=3)",
    "complete",
    "targeted_dropout(rho=0.5)",
    "l1_anneal(strength=1e-3)",
    "lottery_one_shot",
    "fine_tune",
]


def small_spec(
    tmp_path,
    semantics: str,
    wiring: str,
    budget: str = "12",
    send: str = "",
    norm: str = "instancenorm",
) -> str:
    dynamic = semantics != "static"
    edges = "edges all(a, h, out, self_loops=true)" if dynamic else "edges forward(a, h, g, out)"
    g_set = "" if dynamic else f"\n    nodes g[3] op({norm}, relu, dwconv(k=3))"
    text = textwrap.dedent(f"""\
    network small {{
      input image(2, 6, 6)
      classes 3
      stem {{
        conv(4, k=3)
      }}
      graph net {{
        nodes a[4] input op({norm}, relu, dwconv(k=3))
        nodes h[5] op({norm}, relu, dwconv(k=3)){send}{g_set}
        nodes out[3] output
        {edges}
        budget {budget}
        wiring {wiring}
        semantics {SEMANTICS[semantics]}
      }}
      head {{
        avgpool, linear(classes)
      }}
    }}
    """)
    path = tmp_path / "small.wire"
    path.write_text(text)
    return str(path)


def _graph_input(model, x):
    return model.gm.stem_0(x)


@pytest.mark.parametrize("semantics,method", list(itertools.product(SEMANTICS, METHODS)))
def test_fast_equals_reference(tmp_path, semantics, method):
    torch.manual_seed(0)
    net = build(
        small_spec(
            tmp_path, semantics, method, send=" send(relu)" if semantics == "discrete" else ""
        )
    )
    model = compile_network(net, seed=1)
    if method == "targeted_dropout(rho=0.5)":
        model.eval()  # dropout of edges is random in training; evaluation uses the top k
    g = net.graphs()[0]
    parts = model.graph_parts("net")
    x = torch.randn(3, 2, 6, 6)
    gin = _graph_input(model, x).detach().requires_grad_(True)

    def fast(inp):
        sub = getattr(model.gm, safe("net"))
        if g.semantics.kind == "continuous":
            return sub(inp)
        # run the graph part of the fx module: everything between the stem and the head
        return _run_graph_nodes(model, inp)

    out_fast = fast(gin)
    out_ref = evaluate_graph(parts, g, gin)
    assert out_fast.shape == out_ref.shape
    assert torch.allclose(out_fast, out_ref, atol=1e-5, rtol=1e-4)
    weights = list(parts.wiring.weights())
    inputs = [gin] + weights
    gf = torch.autograd.grad(out_fast.square().sum(), inputs, allow_unused=True)
    gr = torch.autograd.grad(out_ref.square().sum(), inputs, allow_unused=True)
    for a, b, t in zip(gf, gr, inputs, strict=True):
        a = torch.zeros_like(t) if a is None else a  # a weight matrix with no active edge
        b = torch.zeros_like(t) if b is None else b
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def _run_graph_nodes(model, gin):
    """Interpret the fx graph from the stem's output to the graph's output."""
    import torch.fx as fx

    env = {}
    gm = model.gm
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.target == "stem_0":
            env[node] = gin
            continue
        if node.op == "call_module" and node.target.startswith("head"):
            return env[node.args[0]]
        args = fx.node.map_arg(node.args, lambda n: env[n])
        if node.op == "call_module":
            env[node] = gm.get_submodule(node.target)(*args)
        elif node.op == "call_function":
            env[node] = node.target(*args)
    raise AssertionError("no head found")


def test_exactly_k_active_and_never_a_non_candidate(tmp_path):
    for budget in ["1", "7", "50%", "100%"]:
        net = build(small_spec(tmp_path, "discrete", "dnw", budget=budget))
        model = compile_network(net)
        g = net.graphs()[0]
        mask = model.masks()["net"]
        active = mask.active()
        assert sum(int(a.sum()) for a in active) == g.budget.k
        for a, c in zip(active, mask.candidate_masks(), strict=True):
            if c is not None:
                assert not bool((a & ~c).any())


def test_self_loops_off_excludes_the_diagonal(tmp_path):
    text = (
        Path(small_spec(tmp_path, "discrete", "complete"))
        .read_text()
        .replace("self_loops=true", "self_loops=false")
    )
    path = tmp_path / "noloops.wire"
    path.write_text(text)
    net = build(path)
    g = net.graphs()[0]
    assert g.candidates == 12 * 12 - 12
    model = compile_network(net)
    total = sum(int(a.sum()) for a in model.masks()["net"].active())
    assert total == g.candidates


def test_dnw_passes_gradient_to_inactive_candidates_and_no_update_does_not(tmp_path):
    grads = {}
    for method in ("dnw", "dnw_no_update"):
        model = compile_network(build(small_spec(tmp_path, "static", method, budget="5")), seed=0)
        model(torch.randn(2, 2, 6, 6)).sum().backward()
        mask = model.masks()["net"]
        inactive = [
            ~a & (c if c is not None else torch.ones_like(a))
            for a, c in zip(mask.active(), mask.candidate_masks(), strict=True)
        ]
        grads[method] = sum(
            float(w.grad[i].abs().sum()) for w, i in zip(mask.weights(), inactive, strict=True)
        )
    assert grads["dnw"] > 0
    assert grads["dnw_no_update"] == 0


def test_random_mask_depends_only_on_its_seed(tmp_path):
    path = small_spec(tmp_path, "static", "random(seed=7)")
    a = compile_network(build(path), seed=1)
    b = compile_network(build(path), seed=2)
    assert not torch.equal(a.masks()["net"].weights()[0], b.masks()["net"].weights()[0])
    assert a.mask_hash() == b.mask_hash()
    with torch.no_grad():
        for w in a.masks()["net"].weights():
            w.mul_(-3.0).add_(1.0)
    assert a.mask_hash() == b.mask_hash()
    c = compile_network(build(small_spec(tmp_path, "static", "random(seed=8)")), seed=1)
    assert c.mask_hash() != a.mask_hash()


def test_topk_mask_exact_and_ties_go_to_lower_indices():
    scores = torch.tensor([1.0, 3.0, 2.0, 2.0, 2.0, 0.5])
    m = topk_mask(scores, 3)
    assert m.tolist() == [False, True, True, True, False, False]
    for k in range(0, 7):
        assert int(topk_mask(scores, k).sum()) == k


def test_lottery_freeze_fixes_the_topk(tmp_path):
    model = compile_network(build(small_spec(tmp_path, "static", "lottery_one_shot", budget="9")))
    mask = model.masks()["net"]
    g = model.net.graphs()[0]
    assert sum(int(a.sum()) for a in mask.active()) == g.candidates  # phase one: the complete graph
    model.freeze_topk()
    assert sum(int(a.sum()) for a in mask.active()) == 9
    before = model.mask_hash()
    with torch.no_grad():
        for w in mask.weights():
            w.copy_(torch.randn_like(w))
    assert model.mask_hash() == before  # phase two keeps the mask whatever the weights do


def test_sparsify_resnet50_keeps_exactly_the_requested_weights():
    import torchvision

    import wirelang
    from wirelang.backend.modules import SparseConv2d, SparseLinear

    model = wirelang.sparsify(torchvision.models.resnet50(), budget=0.1, exclude=["conv1"])
    sparse = [m for m in model.modules() if isinstance(m, SparseConv2d | SparseLinear)]
    assert len(sparse) == 53 - 1 + 1  # 53 convolutions (one excluded) and the classifier
    assert type(model.conv1) is torch.nn.Conv2d
    for m in sparse:
        assert int(m.mask.active()[0].sum()) == int(0.1 * m.weight.numel())
    # the forward pass uses exactly the masked weights
    fc = model.fc
    x = torch.randn(2, 2048)
    expected = torch.nn.functional.linear(x, fc.weight * fc.mask.active()[0], fc.bias)
    assert torch.allclose(fc(x), expected)


def test_sparsify_pooled_budget_is_global():
    from wirelang import sparsify
    from wirelang.backend.modules import SparseLinear

    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 5))
    with torch.no_grad():
        model[0].weight.mul_(100.0)  # the first layer dominates the global ranking
    sparsify(model, budget=0.2, pooled=True)
    assert all(isinstance(model[i], SparseLinear) for i in (0, 2))
    a, b = (int(model[i].mask.active()[0].sum()) for i in (0, 2))
    assert a + b == int(0.2 * 300)
    assert b == 0
    model(torch.randn(4, 10)).sum().backward()
    inactive = ~model[2].mask.active()[0]
    assert float((model[2].weight.grad * inactive).abs().sum()) > 0  # straight-through


def test_l1_anneal_progress_is_saved_with_the_weights(tmp_path):
    net = build(small_spec(tmp_path, "static", "l1_anneal(strength=1e-3, end=0.5)", budget="5"))
    model = compile_network(net)
    g = net.graphs()[0]
    assert sum(int(a.sum()) for a in model.masks()["net"].active()) == g.candidates
    model.set_progress(0.75)  # past `end`: exactly k edges
    assert sum(int(a.sum()) for a in model.masks()["net"].active()) == 5
    fresh = compile_network(net)
    fresh.load_state_dict(model.state_dict())
    assert sum(int(a.sum()) for a in fresh.masks()["net"].active()) == 5
