"""A compact plan as plain PyTorch source (Jinja2 templates in `templates/`) plus its weights.

`render(plan)` gives the text of a module that imports only torch; `instantiate(plan)` runs that
text and loads the plan's weights, which is how `compact.py` gets the nn.Module it exports to
pt2 / ONNX: the source a user receives and the exported program are one implementation.
`write_standalone(plan, out)` writes `model.py`, `weights.pt` and nothing else.
"""

from __future__ import annotations

import json
import keyword
import linecache
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

MODULE_NAME = "compact_model"  # never `wirelang...`: nothing may try to import the package


def _pad(p: dict) -> int:
    return p["k"] // 2 if p.get("padding") is None else p["padding"]


def _pool(cls: str, p: dict) -> str:
    return (
        f"nn.{cls}({p['k']}, stride={p.get('stride') or p['k']}, padding={p.get('padding') or 0})"
    )


# Constructors of the layer vocabulary (`wirelang.ops`) as source text: (params, in channels).
CTORS: dict[str, Callable[[dict, int], str]] = {
    "conv": lambda p, c: (
        f"nn.Conv2d({c}, {p['out']}, {p['k']}, stride={p['stride']}, padding={_pad(p)}, groups={p['groups']}, bias={p['bias']})"
    ),
    "dwconv": lambda p, c: (
        f"nn.Conv2d({c}, {c}, {p['k']}, stride={p['stride']}, padding={_pad(p)}, groups={c}, bias={p['bias']})"
    ),
    "batchnorm": lambda p, c: f"nn.BatchNorm2d({c}, affine={p['affine']})",
    "instancenorm": lambda p, c: f"nn.InstanceNorm2d({c}, affine={p['affine']})",
    "relu": lambda p, c: "nn.ReLU()",
    "relu6": lambda p, c: "nn.ReLU6()",
    "gelu": lambda p, c: "nn.GELU()",
    "silu": lambda p, c: "nn.SiLU()",
    "sigmoid": lambda p, c: "nn.Sigmoid()",
    "tanh": lambda p, c: "nn.Tanh()",
    "identity": lambda p, c: "nn.Identity()",
    "leakyrelu": lambda p, c: f"nn.LeakyReLU({p['slope']!r})",
    "maxpool": lambda p, c: _pool("MaxPool2d", p),
    "avgpool": lambda p, c: (
        "nn.AdaptiveAvgPool2d(1)" if p.get("k") is None else _pool("AvgPool2d", p)
    ),
    "centercrop": lambda p, c: f"CenterCrop({p['size']})",
    "flatten": lambda p, c: "nn.Flatten(1)",
    "dropout": lambda p, c: f"nn.Dropout({p['p']!r})",
    "linear": lambda p, c: f"FlatLinear({c}, {p['out']}, bias={p['bias']})",
}


def ctor(op: str, params: dict, channels: int) -> str:
    return CTORS[op](params, channels)


def sequential(ctors: list[str], cls: str = "nn.Sequential") -> str:
    """`cls`: `NodeOps` for a node set's operator (the generated model's C x N x H x W layout)."""
    if not ctors:
        return "nn.Identity()"
    return f"{cls}(" + ", ".join(ctors) + ")"


def doc_text(text: object) -> str:
    """`text` made inert inside a triple-quoted docstring: quotes, backslashes, newlines and
    every non-ASCII character escaped (a run folder's name is anybody's text)."""
    return json.dumps(str(text), ensure_ascii=True)[1:-1]


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        undefined=jinja2.StrictUndefined,  # a missing plan field is a bug: fail, never print ""
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["doc"] = doc_text
    return env


def _check_identifiers(plan) -> None:
    """Every name the source defines is a plain identifier (they come from spec names)."""
    names = [g.cls for g in plan.graphs] + [a for g in plan.graphs for a, _ in g.modules]
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise ValueError(f"not a Python identifier in generated source: {name!r}")


def render(plan) -> str:
    """The plan (`wirelang.export.compact.CompactPlan`) as the text of `model.py`."""
    _check_identifiers(plan)
    return _environment().get_template("model.py.j2").render(plan=plan)


def load_source(source: str) -> types.ModuleType:
    """Run rendered source as a fresh module (kept in linecache, so tracebacks show it)."""
    filename = f"<{MODULE_NAME}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    module = types.ModuleType(MODULE_NAME)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def instantiate(plan, source: str | None = None) -> nn.Module:
    """The plan's model, built from its rendered source, weights loaded, in eval mode."""
    module = load_source(source if source is not None else render(plan))
    model = module.Model()
    model.load_state_dict(plan.state, strict=True)
    return model.eval()


def write_standalone(plan, out: Path) -> list[Path]:
    """`out/model.py` (imports torch only) and `out/weights.pt` (its state_dict)."""
    out.mkdir(parents=True, exist_ok=True)
    source = render(plan)
    instantiate(plan, source)  # fails here, not at the user's, if source and weights disagree
    (out / "model.py").write_text(source, encoding="utf-8")
    torch.save({k: v.contiguous() for k, v in plan.state.items()}, out / "weights.pt")
    return [out / "model.py", out / "weights.pt"]
