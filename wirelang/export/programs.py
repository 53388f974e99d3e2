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
    program = torch.export.export(module, (x,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))


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
                dynamic_shapes={"x": {0: batch}},
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


@torch.inference_mode()
def measure(
    models: dict[str, nn.Module], x: torch.Tensor, budget_s: float = 1.0
) -> dict[str, dict[str, float]]:
    """Per model: stored and non-zero parameters, multiply-adds per image as executed (what
    torch's FlopCounterMode sees: convolutions, linear layers, matrix products) and the median
    latency of a batch on one thread. The models take turns, so that a machine busy with
    other work slows them alike."""
    from torch.utils.flop_counter import FlopCounterMode

    out: dict[str, dict[str, float]] = {}
    for name, model in models.items():
        with FlopCounterMode(display=False) as counter:
            model(x)  # also the warm-up
        params = list(model.parameters())
        out[name] = {
            "params": sum(p.numel() for p in params),
            "params_nonzero": sum(int(p.count_nonzero()) for p in params),
            "macs_executed": counter.get_total_flops() // 2 // x.shape[0],
            "batch": x.shape[0],
        }
    times: dict[str, list[float]] = {name: [] for name in models}
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # one core: comparable runs, and no spinning threads on a shared machine
    try:
        start = time.perf_counter()
        while min(len(t) for t in times.values()) < 5 or (
            time.perf_counter() - start < budget_s and len(times[name]) < 200
        ):
            for name, model in models.items():
                t = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t)
    finally:
        torch.set_num_threads(threads)
    for name in models:
        out[name]["latency_ms"] = 1000 * statistics.median(times[name])
    return out


def export_run(
    run: Run,
    fmt: str,
    out: Path,
    solver: str | None = None,
    steps: int | None = None,
    batch: int = 32,
    check: bool = True,
    latency_s: float = 1.0,
) -> dict[str, Any]:
    """Write `out` in `fmt`; for compact formats, check and measure it. Returns the report."""
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
    from wirelang.export.standalone import instantiate, write_standalone

    plan = plan_network(run.net, run.model, run.label, solver=solver, steps=steps)
    compact = instantiate(plan)
    x = example_input(run, batch)
    if fmt == "pt2":
        export_pt2(compact, x[:2], out)
    elif fmt == "onnx":
        try:
            report["exporter"] = export_onnx(compact, x[:2], out)
        except ImportError as err:  # torch.onnx needs the onnx packages, which are optional
            raise RunError(
                f"ONNX export needs `{err.name}`: pip install onnx onnxscript onnxruntime"
            ) from None
    else:
        write_standalone(plan, out)
    report["graphs"] = [
        {"name": g.name, "mode": g.mode, "nodes": list(g.nodes), "edges": list(g.edges)}
        for g in plan.graphs
    ]
    if not check:
        return report
    unrolled = any(g.mode in ("euler", "midpoint", "rk4") for g in plan.graphs)
    reference = run.model
    if unrolled:
        mode = next(g for g in plan.graphs if g.mode in ("euler", "midpoint", "rk4"))
        reference = fixed_step_reference(run.net, run.model, mode.mode, steps or len(mode.dts))
    if fmt == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        report["note"] = "not checked: onnxruntime is not installed"
        return report
    with torch.inference_mode():
        artifact = load_artifact(fmt, out)
        expected = reference(x)
        got = artifact(x)
        report["max_abs_diff"] = float((got - expected).abs().max())
        report["max_abs_output"] = float(expected.abs().max())
        if unrolled:
            report["max_abs_diff_vs_adaptive"] = float((got - run.model(x)).abs().max())
    from wirelang.export.inspect import inspect_run

    report.update(measure({"masked": run.model, "compact": compact}, x, latency_s))
    paper = inspect_run(run)  # what the paper counts: k weights per wiring, live nodes only
    report["masked"].update(params_paper=run.model.count_params(), macs_paper=paper["macs"])
    return report


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
    say(f"{'':15}{'parameters':>12}{'effective':>12}{'multiply-adds':>15}{'latency':>12}")
    say(
        f"{'masked model':15}{human(m['params']):>12}{human(m['params_paper']):>12}{human(m['macs_paper']):>15}"
        f"{m['latency_ms']:>9.2f} ms"
    )
    say(
        f"{'compact model':15}{human(c['params']):>12}{human(c['params_nonzero']):>12}{human(c['macs_executed']):>15}"
        f"{c['latency_ms']:>9.2f} ms"
    )
    say(
        "effective parameters: k weights per wiring (masked), non-zero weights (compact); multiply-adds per image: "
        "the paper's count over live nodes (masked), as executed, each set-to-set block a dense 1x1 convolution "
        f"over its live rows and columns (compact); latency: median per batch of {c['batch']}, one CPU thread"
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
