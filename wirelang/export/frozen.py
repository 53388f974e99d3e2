"""The IR printed back as one self-contained `.wire`: `wirelang export RUN --format wire`.

No includes, templates, lets or repeats: the expanded network, with each graph's candidate
blocks spelt out (`edges a -> b`) and its learned edges as `wiring fixed { ... }` (one line per
source node and target set), or `wiring complete` when every candidate is active. A `fixed`
graph keeps the same weight matrices, so the run's checkpoint loads into the frozen spec
directly.

Names must give the same state_dict keys as the original. Modules are named `safe(name)`
(dots become underscores), so a graph `tiny.body` is printed as `graph tiny_body` and a layer
block `tiny.stem` as `stem tiny_stem`: its layers `tiny_stem.0`, ... land on the same modules.
Set groups (`h[64] * 3`, sets `h.1`..`h.3`) are printed as groups so the set names survive.

Sparse layers keep their wiring method with their learned count (`sparse=K`): their masks are
either a function of the loaded weights (top-k) or buffers stored in the checkpoint (random,
the second phase of lottery / fine-tune), so the frozen spec reproduces them exactly. Pools
disappear: every member gets its learned share as its own count.
"""

from __future__ import annotations

import re
from typing import Any

from wirelang import methods
from wirelang.ir import core
from wirelang.ops import get_op
from wirelang.train_config import TrainConfig
from wirelang.version import LANGUAGE_VERSION, __version__

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def value(v: Any) -> str:
    """A plain value as .wire text."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, str):
        return (
            v
            if _IDENT.match(v) and v not in ("true", "false")
            else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        )
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):  # a named choice with settings: `sgd(lr=0.1)`
        rest = {k: x for k, x in v.items() if k != "name" and x is not None}
        return v["name"] + (
            "(" + ", ".join(f"{k}={value(x)}" for k, x in rest.items()) + ")" if rest else ""
        )
    raise TypeError(f"cannot print {v!r} as .wire")


def call(name: str, params: dict[str, Any], specs, positional: tuple[str, ...] = ()) -> str:
    """`name(pos, key=value)` with default-valued parameters left out."""
    args = []
    for p in specs:
        if p.name not in params:
            continue
        v = params[p.name]
        # a kernel size is always shown: `dwconv(k=3)` reads like the paper
        if v is None or (
            p.name != "k" and not p.required and v == p.default and type(v) is type(p.default)
        ):
            continue
        bare = (
            p.name in positional and p.name != "k" and len(args) == positional.index(p.name)
        )  # `dwconv(k=3)`, not `dwconv(3)`
        args.append(value(v) if bare else f"{p.name}={value(v)}")
    return name + (f"({', '.join(args)})" if args else "")


def layer_text(layer: core.Layer, sparse_k: int | None = None) -> str:
    spec = get_op(layer.op)
    params = dict(layer.params)
    if sparse_k is not None:
        params["sparse"] = sparse_k
    return call(layer.op, params, spec.params, spec.positional)


def flat(name: str) -> str:
    """A dotted IR name as one identifier that `safe()` maps to the same module name."""
    return name.replace(".", "_").replace("-", "_")


class IRPrinter:
    """Prints the IR as .wire text; the frozen export's wirings here, the dense twin's in
    `wirelang.export.dense` (its `graph` and `sparse_k`)."""

    def __init__(self, model, edges: dict[str, list]):
        self.model = model
        self.edges = edges
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def open(self, text: str) -> None:
        self.line(text + " {")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    # -- layers
    def sparse_k(self, layer: core.Layer) -> int | None:
        if layer.sparse is None:
            return None
        return int(sum(int(m.sum()) for m in self.model.masks()[layer.path].active()))

    def text(self, layer: core.Layer) -> str:
        """One layer of a block as .wire text."""
        return layer_text(layer, self.sparse_k(layer))

    def layers(self, layers: list[core.Layer]) -> None:
        for layer in layers:
            self.line(self.text(layer))

    def block(self, name: str, layers: list[core.Layer]) -> None:
        last = name.rsplit(".", 1)[-1]
        kind = last if last in ("stem", "head") else "layers"
        self.open(kind if name == kind else f"{kind} {flat(name)}")
        self.layers(layers)
        self.close()

    def residual(self, res: core.Residual) -> None:
        self.open(f"residual {flat(res.name)}")
        self.open("branch")
        self.layers(res.branch)
        self.close()
        if res.shortcut:
            self.open("shortcut")
            self.layers(res.shortcut)
            self.close()
        if res.after:
            self.line("after " + ", ".join(self.text(x) for x in res.after))
        self.close()

    # -- graphs
    def graph(self, g: core.Graph) -> None:
        self.open(f"graph {flat(g.name)}")
        self.structure(g)
        edges = self.edges[g.name]
        if len(edges) == g.candidates:  # every candidate: no need to list millions of edges
            self.line("wiring complete")
            self.semantics(g)
            return
        self.line(f"budget {len(edges)}")
        self.open("wiring fixed")
        targets: dict[tuple[str, int, str], list[int]] = {}
        for src, i, dst, j, _ in edges:  # sorted by source node, then target
            targets.setdefault((src, i, dst), []).append(j)
        for (src, i, dst), js in targets.items():
            self.line(f"{src}[{i}] -> {dst}[{', '.join(map(str, js))}]")
        self.close()
        self.semantics(g)

    def structure(self, g: core.Graph) -> None:
        """A graph's `nodes` and `edges` lines."""
        for text in _set_lines(g):
            self.line(text)
        for b in g.blocks:
            self.line(
                f"edges all({b.source}, self_loops=true)"
                if b.source == b.target and b.self_loops
                else f"edges {b.source} -> {b.target}"
            )

    def semantics(self, g: core.Graph) -> None:
        """The graph's last line, and its closing brace."""
        sem = g.semantics
        spec = methods.SEMANTICS[sem.kind]
        self.line("semantics " + call(sem.kind, sem.parameters(), spec.params))
        init = g.init
        self.line("init " + call(init.kind, init.parameters(), methods.INITS[init.kind].params))
        self.close()

    # -- training
    def train(self, settings: dict[str, Any]) -> None:
        defaults = TrainConfig().model_dump(mode="json")
        cfg = TrainConfig.model_validate(settings).model_dump(mode="json")
        body = []
        for key, v in cfg.items():
            if v is None or (v == defaults.get(key) and key != "data"):
                continue
            if key == "phase2":
                body.append(("phase2", {k: x for k, x in v.items() if x is not None}))
                continue
            if isinstance(v, dict):  # keep only what differs from the choice's own defaults
                base = (
                    type(getattr(TrainConfig(), key))
                    .model_validate({"name": v["name"]})
                    .model_dump(mode="json")
                )
                v = {
                    "name": v["name"],
                    **{k: x for k, x in v.items() if k != "name" and x != base.get(k)},
                }
            body.append((key, v))
        self.open("train")
        for key, v in body:
            if key == "phase2":
                self.open("phase2")
                for k, x in v.items():
                    self.line(f"{k} {value(x)}")
                self.close()
            else:
                self.line(f"{key} {value(v)}")
        self.close()


def _set_lines(g: core.Graph) -> list[str]:
    """`nodes` lines in set order; a group's sets `h.1`..`h.n` as one `h[size] * n`."""
    out, i = [], 0
    while i < len(g.sets):
        s = g.sets[i]
        name, n = s.name, 1
        if "." in s.name:
            stem = s.name.rsplit(".", 1)[0]
            while i + n < len(g.sets) and g.sets[i + n].name == f"{stem}.{n + 1}":
                n += 1
            name = f"{stem}[{s.size}] * {n}"
        else:
            name = f"{s.name}[{s.size}]"
        text = f"nodes {name}"
        if s.role != "hidden":
            text += f" {s.role}"
        if s.op:
            text += " op(" + ", ".join(layer_text(x) for x in s.op) + ")"
        if s.send:
            text += " send(" + ", ".join(layer_text(x) for x in s.send) + ")"
        out.append(text)
        i += n
    return out


def layer_blocks(items: list) -> list:
    """Network items with consecutive layers of one block (`tiny.stem.0`, ...) grouped."""
    out: list = []
    for item in items:
        if isinstance(item, core.Layer):
            block, index = item.path.rsplit(".", 1)
            if out and isinstance(out[-1], tuple) and out[-1][0] == block:
                out[-1][1].append(item)
            else:
                out.append((block, [item]))
            # the frozen block renumbers its layers from 0: they must already be 0, 1, 2, ...
            assert int(index) == len(out[-1][1]) - 1, (
                f"layer {item.path} is not where its block expects it"
            )
        else:
            out.append(item)
    return out


def _method_key(w: core.Wiring) -> tuple:
    """A wiring's method and parameters, without where it was written."""
    return (w.method, tuple(sorted(w.parameters().items())))


def sparse_block(net: core.Network) -> list[str]:
    """A `sparse` block when sparse layers use a method other than `dnw` (the per-layer
    default): it sets the method only; every other layer of those kinds is excluded."""
    sparse = [x for x in net.layers() if x.sparse is not None]
    wirings = {_method_key(x.sparse.wiring) for x in sparse}
    if not sparse or wirings == {_method_key(methods.new_wiring(methods.DEFAULT_WIRING))}:
        return []
    assert len(wirings) == 1, "one network has one `sparse` wiring method"
    w = sparse[0].sparse.wiring
    kinds = sorted({x.op for x in sparse})
    dense = [
        flat(x.path.rsplit(".", 1)[0]) + "." + x.path.rsplit(".", 1)[1]
        for x in net.layers()
        if x.op in kinds and x.sparse is None
    ]
    lines = ["sparse {", f"  layers {', '.join(kinds)}"]
    if dense:
        lines.append(f"  exclude {', '.join(dense)}")
    lines += [
        "  budget 100%",
        "  wiring " + call(w.method, w.parameters(), methods.WIRINGS[w.method].params),
        "}",
    ]
    return lines


def frozen_wire(net: core.Network, model, source: str = "", train: dict | None = None) -> str:
    """The network with its learned wiring as canonical .wire text (see the module docstring)."""
    from wirelang.export.nodes import edge_list, node_graph

    edges = {g.name: edge_list(node_graph(model, g)) for g in net.graphs()}
    header = [
        f"# Frozen by wirelang {__version__} (language version {LANGUAGE_VERSION}) from {source or net.name}."
    ]
    if edges:
        header.append(
            "# Learned wiring: "
            + ", ".join(f"{name}: {len(e):,} edges" for name, e in edges.items())
            + "."
        )
    return network_text(net, IRPrinter(model, edges), header, sparse_block(net), train)


def network_text(
    net: core.Network, p: IRPrinter, header: list[str], sparse: list[str], train: dict | None
) -> str:
    """The whole network printed by `p` (its `graph` and `sparse_k` decide the wirings) after
    the comment lines `header`, with the `sparse` block's lines and the train settings."""
    for text in header:
        p.line(text)
    p.open(f"network {net.name}")
    p.line(f"input {net.input_kind}({net.input.channels}, {net.input.height}, {net.input.width})")
    p.line(f"classes {net.classes}")
    for item in layer_blocks(net.items):
        p.line()
        if isinstance(item, tuple):
            p.block(*item)
        elif isinstance(item, core.Residual):
            p.residual(item)
        else:
            p.graph(item)
    if sparse:
        p.line()
        for text in sparse:
            p.line(text)
    p.line()
    p.train(train if train is not None else net.train)
    p.close()
    # Printed in the house style of `wirelang fmt` (a test holds the two together), so the
    # file is canonical without parsing tens of thousands of edge lines once more.
    return "\n".join(p.lines) + "\n"
