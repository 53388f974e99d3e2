"""`wirelang export RUN --format ...`: write one artifact and check it against the trained model.

    wire     a frozen .wire (`frozen.py`)              edges   the learned edges as JSON
    pt2      torch.export program, dynamic batch      onnx    ONNX, dynamic batch
    python   model.py (imports only torch) + weights.pt (`standalone.py`)

Compact artifacts (pt2, onnx, python) are loaded back after writing and run on a random batch
next to the trained model in eval mode (for a continuous graph: the trained model recompiled
with the same fixed-step solver); the report gives the largest difference, and parameters,
multiply-adds and CPU latency of both models.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wirelang.runs.layout import RunError
from wirelang.runs.load import Run

FORMATS = ("wire", "edges", "pt2", "onnx", "python")


def open_source(path: Path, checkpoint: Path | None = None) -> Run:
    """What `wirelang export` reads: a run directory, or a spec (its initial wiring, the
    model `wirelang.load(spec)` gives)."""
    from wirelang.backend.api import compile_network
    from wirelang.runs.load import load_run, load_spec

    path = Path(path)
    if path.is_dir():
        return load_run(path, checkpoint)
    if checkpoint is not None:
        raise RunError("--checkpoint needs a run directory, not a spec")
    net = load_spec(path)
    return Run(net=net, model=compile_network(net).eval())


def edges_json(run: Run) -> dict[str, Any]:
    """Every active edge of every graph: (graph, source, target, weight)."""
    from wirelang.export.nodes import edge_list, node_graph

    edges = []
    for g in run.net.graphs():
        for src, i, dst, j, w in edge_list(node_graph(run.model, g)):
            edges.append(
                {
                    "graph": g.name,
                    "source": src,
                    "source_index": i,
                    "target": dst,
                    "target_index": j,
                    "weight": w,
                }
            )
    return {"network": run.net.name, "run": run.label, "edges": edges}


def example_input(run: Run, batch: int) -> torch.Tensor:
    i = run.net.input
    return torch.randn(
        batch, i.channels, i.height, i.width, generator=torch.Generator().manual_seed(0)
    )


def export_pt2(module: nn.Module, x: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    name = _input_name(module)
    program = torch.export.export(module, (x,), dynamic_shapes={name: {0: batch}})
    torch.export.save(program, str(path))


def _input_name(module: nn.Module) -> str:
    """The name of forward's first argument (`x` in wirelang's models; torchvision's too)."""
    import inspect

    return next(iter(inspect.signature(module.forward).parameters))


def export_onnx(module: nn.Module, x: torch.Tensor, path: Path) -> str:
    """The TorchScript exporter when this torch has it (seconds), else dynamo (slower)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                (x,),
                str(path),
                dynamo=False,
                input_names=["x"],
                output_names=["scores"],
                dynamic_axes={"x": {0: "batch"}, "scores": {0: "batch"}},
                opset_version=17,
            )
            return "torchscript"
        except Exception:  # removed or unable: the dynamo exporter is the supported path
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            torch.onnx.export(
                module,
                (x,),
                str(path),
                dynamo=True,
                input_names=["x"],
                output_names=["scores"],
                dynamic_shapes={_input_name(module): {0: batch}},
            )
            return "dynamo"


def load_artifact(fmt: str, path: Path):
    """A callable x -> scores from a written compact artifact."""
    if fmt == "pt2":
        return torch.export.load(str(path)).module()
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
    from wirelang.export.standalone import load_source

    module = load_source((path / "model.py").read_text(encoding="utf-8"))
    return module.load(str(path / "weights.pt"))


def measure(
    models: dict[str, nn.Module], x: torch.Tensor, budget_s: float = 1.0
) -> dict[str, dict[str, float]]:
    """Per model: stored and non-zero parameters, multiply-adds per image as torch's
    FlopCounterMode sees them (convolutions, linear layers, dense matrix products; not sparse
    or gathered products) and the median latency on one thread of a batch of one image and of
    `x`. The models take turns, so that a machine busy with other work slows them alike."""
    from torch.utils.flop_counter import FlopCounterMode

    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x)  # also the warm-up
        params = list(model.parameters())
        out[name] = {
            "params": sum(p.numel() for p in params),
            "params_nonzero": sum(int(p.count_nonzero()) for p in params),
            "macs_executed": counter.get_total_flops() // 2 // x.shape[0],
            "batch": x.shape[0],
        }
    batches = {"latency_ms_batch1": x[:1], "latency_ms": x}
    times = {(key, name): [] for key in batches for name in models}
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # one core: comparable runs, and no spinning threads on a shared machine
    try:
        with torch.inference_mode():
            start = time.perf_counter()
            while min(len(t) for t in times.values()) < 5 or (
                time.perf_counter() - start < budget_s and max(len(t) for t in times.values()) < 200
            ):
                for key, xb in batches.items():
                    for name, model in models.items():
                        t = time.perf_counter()
                        model(xb)
                        times[key, name].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    for (key, name), ts in times.items():
        out[name][key] = 1000 * statistics.median(ts)
    return out


def write_program(fmt: str, module: nn.Module, x: torch.Tensor, out: Path, source=None) -> dict:
    """Write a plain module (no masks) as `fmt`; `source()` gives (model.py text, state_dict)
    for format python. Returns what the report says about the writing."""
    report: dict[str, Any] = {}
    if fmt == "pt2":
        export_pt2(module, x, out)
    elif fmt == "onnx":
        try:
            report["exporter"] = export_onnx(module, x, out)
        except ImportError as err:  # torch.onnx needs the onnx packages, which are optional
            raise RunError(
                f"ONNX export needs `{err.name}`: pip install onnx onnxscript onnxruntime"
            ) from None
    else:
        text, state = source()
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.py").write_text(text, encoding="utf-8")
        torch.save({k: v.contiguous() for k, v in state.items()}, out / "weights.pt")
    return report


def compare(fmt: str, out: Path, reference: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """The written artifact loaded back and run on `x` next to `reference` (eval mode)."""
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        return {"note": "not checked: onnxruntime is not installed"}
    with torch.inference_mode():
        artifact = load_artifact(fmt, out)
        expected = reference(x)
        got = artifact(x)
    return {
        "max_abs_diff": float((got - expected).abs().max()),
        "max_abs_output": float(expected.abs().max()),
    }


def export_run(
    run: Run,
    fmt: str,
    out: Path,
    solver: str | None = None,
    steps: int | None = None,
    batch: int = 32,
    check: bool = True,
    latency_s: float = 1.0,
    example: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Write `out` in `fmt`; for compact formats, check and measure it. Returns the report.
    `example`: the batch to check with (default a random one of `batch` images)."""
    out = Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"format": fmt, "out": str(out), "run": run.label}
    if fmt == "wire":
        from wirelang.export.frozen import frozen_wire

        out.write_text(frozen_wire(run.net, run.model, run.label, run.train), encoding="utf-8")
        return report
    if fmt == "edges":
        data = edges_json(run)
        head = json.dumps({k: v for k, v in data.items() if k != "edges"})[:-1]
        rows = ",\n".join("  " + json.dumps(e) for e in data["edges"])  # one edge per line
        out.write_text(f'{head}, "edges": [\n{rows}\n]}}\n', encoding="utf-8")
        report["edges"] = len(data["edges"])
        return report
    from wirelang.export.compact import fixed_step_reference, plan_network
    from wirelang.export.standalone import instantiate, render

    plan = plan_network(run.net, run.model, run.label, solver=solver, steps=steps)
    compact = instantiate(plan)
    x = example if example is not None else example_input(run, batch)
    traced = x if x.shape[0] > 1 else torch.cat([x, x])  # a batch of 1 would fix the size
    report.update(write_program(fmt, compact, traced[:2], out, lambda: (render(plan), plan.state)))
    if fmt == "python":
        instantiate(
            plan, (out / "model.py").read_text(encoding="utf-8")
        )  # source and weights agree
    report["graphs"] = [
        {
            "name": g.name,
            "mode": g.mode,
            "nodes": list(g.nodes),
            "edges": list(g.edges),
            "products": g.forms(),
        }
        for g in plan.graphs
    ]
    if not check:
        return report
    unrolled = any(g.mode in ("euler", "midpoint", "rk4") for g in plan.graphs)
    reference = run.model
    if unrolled:
        mode = next(g for g in plan.graphs if g.mode in ("euler", "midpoint", "rk4"))
        reference = fixed_step_reference(run.net, run.model, mode.mode, steps or len(mode.dts))
    report.update(compare(fmt, out, reference, x))
    if "note" in report:
        return report
    if unrolled:
        with torch.inference_mode():
            got = load_artifact(fmt, out)(x)
            report["max_abs_diff_vs_adaptive"] = float((got - run.model(x)).abs().max())
    from wirelang.export.inspect import inspect_run

    paper = inspect_run(run)  # what the paper counts: k weights per wiring, live nodes only
    models = {"masked": run.model, "compact": compact}
    twin = dense_model(run, paper["macs"], solver, steps, report)
    if twin is not None:
        models["dense"] = twin[1]
    report.update(measure(models, x, latency_s))
    report["compact"].update(plan.macs(report["compact"]["macs_executed"]))
    report["masked"].update(params_paper=run.model.count_params(), macs_paper=paper["macs"])
    if twin is not None:
        report["dense"].update(factor=twin[0].factor, macs_paper=twin[0].macs)
    return report


def dense_model(
    run: Run, macs: int, solver: str | None, steps: int | None, report: dict[str, Any]
) -> tuple[Any, nn.Module] | None:
    """The dense network of the same live size (`wirelang.export.dense`) as its compact model,
    random weights: what the compact model's latency is set against. None, with a note in
    `report`, for a network that has none."""
    from wirelang.backend.api import compile_network
    from wirelang.export.compact import plan_network
    from wirelang.export.dense import NoTwin, dense_twin
    from wirelang.export.standalone import instantiate

    try:
        twin = dense_twin(run.net, macs)
    except NoTwin as err:
        report["dense_note"] = str(err)
        return None
    with torch.random.fork_rng():  # the caller's random stream stays as it was
        torch.manual_seed(0)
        model = compile_network(twin.net).eval()
    plan = plan_network(twin.net, model, solver=solver, steps=steps)
    return twin, instantiate(plan).eval()


def export_module(
    module: nn.Module, fmt: str, out: Path, example: torch.Tensor, check: bool = True
) -> dict[str, Any]:
    """Any model as pt2, ONNX or Python source, its masks folded (`wirelang.export`).

    A wirelang model (`wirelang.load` of a spec or a run) becomes its compact model; any other
    module (`wirelang.sparsify` of a torchvision model, say) is copied with every sparse layer
    a plain conv / linear holding w * m. The module's own training / eval mode is restored."""
    from wirelang.backend.api import WiredModel

    out = Path(out)
    if fmt not in ("pt2", "onnx", "python"):
        raise ValueError(f"unknown format {fmt!r}: choose one of pt2, onnx, python")
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    training = module.training
    from wirelang.export.compact import on_cpu

    if not on_cpu(module):
        # a model on a GPU: exported, checked and timed from a copy on the CPU, where the
        # artifacts load (`map_location="cpu"`) and the ONNX runtime reads numpy arrays
        module = copy.deepcopy(module).cpu()
    example = example.cpu()
    try:
        if isinstance(module, WiredModel):
            run = Run(net=module.net, model=module.eval())
            return export_run(run, fmt, out, example=example, check=check, latency_s=0.2)
        from wirelang.export.fold import count_sparse, fold_masks, module_source
        from wirelang.export.standalone import doc_text

        module.eval()
        folded = fold_masks(module)
        layers, live, stored = count_sparse(module)
        report: dict[str, Any] = {
            "format": fmt,
            "out": str(out),
            "run": type(module).__name__,
            "sparse_layers": layers,
            "live_weights": live,
            "stored_weights": stored,
        }
        traced = example if example.shape[0] > 1 else torch.cat([example, example])

        def source() -> tuple[str, dict[str, torch.Tensor]]:
            from wirelang.export.standalone import load_source

            text = module_source(folded, doc_text(f"{type(module).__name__}, exported by wirelang"))
            state = folded.state_dict()  # the tensors that the traced forward pass reads
            return text, {k: state[k] for k in load_source(text).Model().state_dict()}

        report.update(write_program(fmt, folded, traced[:2], out, source))
        if check:
            report.update(compare(fmt, out, module, example))
        return report
    finally:
        module.train(training)


def print_report(report: dict[str, Any], say=print) -> None:
    from wirelang.report import human

    say(f"wrote {report['out']} ({report['format']}) from {report['run']}")
    if "edges" in report:
        say(f"{report['edges']:,} edges")
    for g in report.get("graphs", []):
        say(
            f"graph {g['name']} ({g['mode']}): kept {g['nodes'][0]} of {g['nodes'][1]} nodes, "
            f"{g['edges'][0]:,} of {g['edges'][1]:,} edges"
        )
    if "note" in report:
        say(report["note"])
    if "compact" not in report:
        return
    m, c = report["masked"], report["compact"]
    say(
        f"{'':15}{'parameters':>12}{'effective':>12}{'multiply-adds':>15}"
        f"{'batch 1':>11}{'batch ' + str(c['batch']):>11}"
    )
    say(
        f"{'masked model':15}{human(m['params']):>12}{human(m['params_paper']):>12}{human(m['macs_paper']):>15}"
        f"{m['latency_ms_batch1']:>8.2f} ms{m['latency_ms']:>8.1f} ms"
    )
    say(
        f"{'compact model':15}{human(c['params']):>12}{human(c['params_nonzero']):>12}{human(c['macs_executed']):>15}"
        f"{c['latency_ms_batch1']:>8.2f} ms{c['latency_ms']:>8.1f} ms"
    )
    d = report.get("dense")
    if d is not None:
        say(
            f"{'dense twin':15}{human(d['params']):>12}{human(d['params']):>12}{human(d['macs_paper']):>15}"
            f"{d['latency_ms_batch1']:>8.2f} ms{d['latency_ms']:>8.1f} ms"
        )
    say(
        f"compact vs masked: {m['latency_ms_batch1'] / c['latency_ms_batch1']:.2f}x faster at batch 1, "
        f"{m['latency_ms'] / c['latency_ms']:.2f}x at batch {c['batch']}; "
        f"live multiply-adds of the compact model {human(c['macs_live'])} per image"
    )
    if d is not None:
        say(
            f"compact vs dense twin: {d['latency_ms_batch1'] / c['latency_ms_batch1']:.2f}x at batch 1, "
            f"{d['latency_ms'] / c['latency_ms']:.2f}x at batch {c['batch']} (above 1: the compact model is "
            f"faster); the dense twin is the network "
            f"at width {d['factor']:.3f} with every graph complete: {human(d['macs_paper'])} multiply-adds "
            f"per image against the learned network's {human(m['macs_paper'])}"
        )
    elif "dense_note" in report:
        say(f"no dense twin: {report['dense_note']}")
    forms = [g["products"] for g in report.get("graphs", [])]
    if forms:
        say(
            f"edge products: {sum(f['sparse_blocks'] for f in forms)} gathered blocks "
            f"({sum(f['sparse_live'] for f in forms):,} live weights), "
            f"{sum(f['dense_blocks'] for f in forms)} dense blocks "
            f"({sum(f['dense_live'] for f in forms):,} live of {sum(f['dense_stored'] for f in forms):,} stored); "
            "the ONNX program runs every block dense (ONNX has no fast gathered product)"
        )
    say(
        "effective parameters: k weights per wiring (masked), non-zero weights (compact); multiply-adds per image: "
        "the paper's count over live nodes (masked), as executed (compact: dense blocks count their zeros, "
        "gathered blocks only live weights; dense twin: every weight); latency: median per batch, "
        "one CPU thread"
    )
    ref = (
        "the trained model recompiled with the same fixed-step solver"
        if "max_abs_diff_vs_adaptive" in report
        else "the trained model"
    )
    say(
        f"largest difference from {ref}: {report['max_abs_diff']:.2e} (outputs up to {report['max_abs_output']:.3g})"
    )
    if "max_abs_diff_vs_adaptive" in report:
        say(
            f"largest difference from the adaptive solver: {report['max_abs_diff_vs_adaptive']:.2e}"
        )
