"""Masks folded into plain weights: the one place an export turns a masked layer into a plain one.

`fold_masks(model)` is a copy of any module (a torchvision model made sparse by
`wirelang.sparsify`, a spec's sparse layers, ...) in which every `SparseConv2d` / `SparseLinear`
is an ordinary conv / linear holding `w * m` (`EdgeMask.folded`): no mask module, no top-k, so
`torch.export` and the ONNX exporters see a static program. The compact model of a wirelang
network (`compact.py`) folds its sparse layers through `folded_state` below, and its graphs'
edges through the same `EdgeMask.folded`.

`module_source(model)` is a folded module as PyTorch source that imports only torch (traced by
torch.fx; every leaf module rebuilt from its constructor repr), for `format="python"`.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, fx, nn

from wirelang.backend.modules import FlatLinear, SparseConv2d, SparseLinear, SparseMixin


class FoldRefused(ValueError):
    """A module that cannot be written as the program asked for (one line, exit 2)."""


def folded_state(module: nn.Module) -> dict[str, Tensor]:
    """A layer's tensors with its mask folded into `weight` (no `mask.` entries)."""
    state = {
        k: v.detach().clone() for k, v in module.state_dict().items() if not k.startswith("mask.")
    }
    if isinstance(module, SparseMixin):
        state["weight"] = module.mask.folded()[0].clone()
    return state


def plain_layer(module: nn.Module) -> nn.Module:
    """The plain twin of a sparse layer: same shape and hyper-parameters, folded weight."""
    if isinstance(module, SparseConv2d):
        plain: nn.Module = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            module.bias is not None,
            module.padding_mode,
            device=module.weight.device,
            dtype=module.weight.dtype,
        )
    elif isinstance(module, SparseLinear):
        # SparseLinear flattens its input like FlatLinear: the twin must compute the same
        plain = FlatLinear(
            module.in_features,
            module.out_features,
            module.bias is not None,
            device=module.weight.device,
            dtype=module.weight.dtype,
        )
    else:
        raise TypeError(f"not a sparse layer: {type(module).__name__}")
    plain.load_state_dict(folded_state(module))
    return plain.train(module.training)


def fold_masks(model: nn.Module) -> nn.Module:
    """A copy of `model` (same training / eval mode) with every sparse layer plain and folded.

    The copy shares nothing with `model`: the sparse layers are swapped for their plain twins
    through deepcopy's memo, so the masks themselves are never copied."""
    memo: dict[int, object] = {}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, SparseMixin):
                memo[id(module)] = plain_layer(module)
    return copy.deepcopy(model, memo)


def count_sparse(model: nn.Module) -> tuple[int, int, int]:
    """(sparse layers, their live weights, their stored weights) of a model before folding."""
    layers = [m for m in model.modules() if isinstance(m, SparseMixin)]
    with torch.no_grad():
        live = sum(int(m.mask.folded()[0].count_nonzero()) for m in layers)
    return len(layers), live, sum(m.weight.numel() for m in layers)


# ----------------------------------------------------------------------------- Python source
HEADER = '''"""{doc}

Imports only torch: masks folded into plain weights, traced by torch.fx.

    import torch
    from model import load
    model = load("weights.pt")                 # eval mode
"""

import torch
from torch import nn
from torch.nn import *  # noqa: F403 (the leaf modules below are torch.nn constructors)


def _put(root, path, value):
    """Set `root.a.b.c = value`, making the plain containers on the way."""
    *parents, name = path.split(".")
    for part in parents:
        if not hasattr(root, part):
            root.add_module(part, nn.Module())
        root = getattr(root, part)
    if isinstance(value, nn.Module):
        root.add_module(name, value)
    elif isinstance(value, nn.Parameter):
        root.register_parameter(name, value)
    else:
        root.register_buffer(name, value)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
'''

FOOTER = '''

def load(path="weights.pt"):
    """The model with its weights, in eval mode."""
    model = Model()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()
'''


def module_source(model: nn.Module, doc: str) -> str:
    """A folded model (no sparse layers) as the text of `model.py`; its state_dict loads into
    the `Model` it defines with the model's own keys (those the forward pass reads)."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # data-dependent control flow and the like: not one program
        raise FoldRefused(
            f"format python needs a model torch.fx can trace ({type(err).__name__}: {err}); "
            "use pt2 or onnx"
        ) from None
    lines, made = [], set()
    for node in gm.graph.nodes:
        if node.target in made or node.op not in ("call_module", "get_attr"):
            continue
        made.add(node.target)
        if node.op == "call_module":
            sub = gm.get_submodule(node.target)
            if list(sub.children()):
                raise FoldRefused(f"format python: module `{node.target}` is not a leaf")
            value = repr(sub)
        else:
            t = gm.get_parameter(node.target) if _is_param(gm, node.target) else None
            if t is not None:
                value = f"nn.Parameter(torch.empty({list(t.shape)}, dtype={t.dtype}))"
            else:
                b = gm.get_buffer(node.target)
                value = f"torch.empty({list(b.shape)}, dtype={b.dtype})"
        lines.append(f"        _put(self, {node.target!r}, {value})\n")
    code = gm.code.strip("\n")
    if "torch.fx" in code or "import " in code:
        raise FoldRefused("format python: the traced code calls wrapped functions; use pt2 or onnx")
    body = "".join(lines) + "\n" + "\n".join("    " + line for line in code.splitlines()) + "\n"
    return HEADER.format(doc=doc) + body + FOOTER


def _is_param(gm: nn.Module, target: str) -> bool:
    try:
        gm.get_parameter(target)
        return True
    except AttributeError:
        return False
