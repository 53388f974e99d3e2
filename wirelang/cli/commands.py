"""The `wirelang` command: a thin Typer layer; each command calls one library function.

`wirelang.cli.main` is the entry point; it answers `wirelang check FILE...` without importing
this module (Typer costs a tenth of a second), through the same `check_files`.

Exit codes: 0 success, 1 runtime failure (a missing dataset, a failing disk, ...), 2 a spec or
usage error. A spec error prints located messages, never a Python traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from wirelang.diagnostics import SpecError, SpecWarning, render, render_error
from wirelang.version import LANGUAGE_VERSION, __version__

app = typer.Typer(
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Compile, train, inspect and export neural-network wirings (.wire specs).",
)


class UserError(Exception):
    """A runtime problem to report in one line and exit 1 (no traceback)."""


def _err(text: str) -> None:
    sys.stderr.write(text.rstrip("\n") + "\n")


def fail_spec(err: SpecError) -> None:
    _err(render_error(err))
    n = len(err.diagnostics)
    _err(f"\n{n} error{'s' if n != 1 else ''} found")
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wirelang {__version__} (wire language version {LANGUAGE_VERSION})")
        raise typer.Exit()


def _show_spec_warnings() -> None:
    """Print a `SpecWarning` located, like an error; other warnings as Python prints them."""
    default = warnings.showwarning
    if getattr(default, "wirelang", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if isinstance(message, SpecWarning):
            _err(render(message.diagnostic))
        else:
            default(message, category, filename, lineno, file, line)

    show.wirelang = True  # type: ignore[attr-defined]
    warnings.showwarning = show
    from wirelang.runs.layout import LAUNCHED_ENV

    if os.environ.get(LAUNCHED_ENV) == "1" or os.environ.get("RANK", "0") != "0":
        warnings.simplefilter("ignore", SpecWarning)  # the launcher or rank 0 has said them
    else:
        warnings.simplefilter("always", SpecWarning)  # every spec built says its warnings


_INCLUDE_PATH = typer.Option(
    "--include-path",
    "-I",
    help="A folder includes may read besides the spec's project (repeatable).",
)


def _allow_includes(folders: list[Path] | None) -> None:
    """`--include-path DIR`: through the environment, so that launched ranks see it too."""
    from wirelang.passes.load import INCLUDE_PATH_ENV

    if folders:
        old = [p for p in os.environ.get(INCLUDE_PATH_ENV, "").split(os.pathsep) if p]
        os.environ[INCLUDE_PATH_ENV] = os.pathsep.join([*(str(f.resolve()) for f in folders), *old])


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print versions and exit."
        ),
    ] = False,
    include_path: Annotated[list[Path] | None, _INCLUDE_PATH] = None,
) -> None:
    _show_spec_warnings()
    _allow_includes(include_path)


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="Spec files to check.")],
    include_path: Annotated[list[Path] | None, _INCLUDE_PATH] = None,
) -> None:
    """Check specs; print every problem found; exit 2 if any file fails."""
    from wirelang.cli.check import check_files

    _allow_includes(include_path)
    code = check_files(files)
    if code:
        raise typer.Exit(code)


@app.command(name="compile")
def compile_(
    file: Path,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the artifacts (IR, fx code, standalone module) here."),
    ] = None,
) -> None:
    """Summarise a spec (node sets, candidates, budgets, parameters, multiply-adds) from the IR alone."""
    from wirelang.cost import summary
    from wirelang.frontend import build

    try:
        net = build(file)
    except SpecError as err:
        fail_spec(err)
    info = summary(net)
    if out is not None:
        from wirelang.export.artifacts import write_artifacts

        write_artifacts(net, out)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    from wirelang.report import print_summary

    print_summary(info)
    if out is not None:
        typer.echo(f"artifacts written to {out}")


@app.command()
def fmt(
    files: list[Path],
    check_only: Annotated[
        bool, typer.Option("--check", help="Exit 1 if a file is not canonical; change nothing.")
    ] = False,
    write: Annotated[
        bool, typer.Option("--write", "-w", help="Rewrite the files in place.")
    ] = False,
) -> None:
    """Print (or rewrite) specs in canonical form. Formatting never changes meaning."""
    from wirelang.fmt import format_file
    from wirelang.passes.load import read_spec

    changed = 0
    for f in files:
        try:
            parsed = read_spec(f)
        except SpecError as err:
            fail_spec(err)
        text = format_file(parsed)
        original = f.read_text(encoding="utf-8")
        if check_only:
            if text != original:
                changed += 1
                _err(f"{f}: not canonical (run `wirelang fmt -w {f}`)")
        elif write:
            if text != original:
                f.write_text(text, encoding="utf-8")
                typer.echo(f"formatted {f}")
        else:
            sys.stdout.write(text)
    if check_only and changed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- training
def _run_errors(fn, *args, **kwargs):
    """Call a training function; spec errors exit 2, run errors exit 1 or 2 in one line."""
    from wirelang.runs.layout import RunError

    try:
        return fn(*args, **kwargs)
    except SpecError as err:
        fail_spec(err)
    except RunError as err:
        if not err.quiet:
            _err(f"error: {err}")
        raise typer.Exit(err.exit_code) from None
    except KeyboardInterrupt:
        _err("interrupted (a run continues from its last checkpoint with --resume RUN)")
        raise typer.Exit(130) from None


@app.command()
def train(
    spec: Annotated[
        Path | None, typer.Argument(help="The .wire spec to train (with --resume: the run's own).")
    ] = None,
    gpus: Annotated[
        int, typer.Option("--gpus", help="CUDA devices; N > 1 runs DDP over NCCL.")
    ] = 0,
    procs: Annotated[int, typer.Option("--procs", help="CPU processes running DDP over gloo.")] = 0,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Override `epochs`.")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Override `batch` (global).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Override `seed`.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a train setting: key=value, e.g. optimizer.lr=0.05."),
    ] = None,
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="Override `data.root`.")
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Download the dataset if it is missing.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default runs/<spec>-<time>).")
    ] = None,
    resume: Annotated[
        Path | None, typer.Option("--resume", help="Continue this run directory.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the resolved settings and exit.")
    ] = False,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", help="torch threads of a one-process CPU run (default: the usable cores)."
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="cpu, cuda or cuda:N (default cpu; cuda with --gpus). Saved in config.json.",
        ),
    ] = None,
) -> None:
    """Train a spec on CPU (default), one or many GPUs, or several CPU processes.

    Example: wirelang train specs/quickstart.wire --epochs 1 --out runs/q; then
    wirelang train --resume runs/q continues it after a crash.
    """
    from wirelang.train import TrainOptions
    from wirelang.train import train as train_run

    opts = TrainOptions(
        spec=spec,
        overrides=set_ or [],
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        data_root=data_root,
        download=download,
        out=out,
        resume=resume,
        gpus=gpus,
        procs=procs,
        dry_run=dry_run,
        threads=threads,
        device=device,
    )
    result = _run_errors(train_run, opts)
    if dry_run:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")


@app.command(name="eval")
def eval_(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    split: Annotated[str, typer.Option("--split", help="val or test.")] = "val",
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="A .pt file (default best.pt, else last.pt)."),
    ] = None,
    download: Annotated[
        bool, typer.Option("--download", help="Download the dataset if it is missing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="Where the run's dataset is now, if it moved.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
) -> None:
    """Evaluate a trained run on its validation or test split.

    Example: wirelang eval runs/quickstart --split test --data-root /data/fashion-mnist
    """
    from wirelang.train import evaluate_run

    with _quiet_spec_warnings():
        r = _run_errors(evaluate_run, run, split, checkpoint, download, data_root, device)
    if as_json:
        sys.stdout.write(json.dumps(r) + "\n")
    else:
        typer.echo(
            f"{run} {r['split']} ({r['items']} images): loss {r['loss']:.4f}  "
            f"top1 {100 * r['top1']:.2f}%  top5 {100 * r['top5']:.2f}%"
        )


@app.command()
def sweep(
    spec: Annotated[Path, typer.Argument(help="The .wire spec to train.")],
    seeds: Annotated[int | None, typer.Option("--seeds", help="Run seeds 0..N-1.")] = None,
    seed_list: Annotated[
        str | None, typer.Option("--seed-list", help="Comma-separated seeds, e.g. 1,2,3.")
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a train setting (every run).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Override `epochs`.")] = None,
    procs: Annotated[int, typer.Option("--procs", help="CPU processes per run.")] = 0,
    gpus: Annotated[int, typer.Option("--gpus", help="CUDA devices per run.")] = 0,
    data_root: Annotated[
        str | None, typer.Option("--data-root", help="Override `data.root`.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Sweep directory (default runs/<spec>-sweep).")
    ] = None,
) -> None:
    """Train a spec once per seed and report mean +- std of the test and validation accuracy."""
    from wirelang.train.sweep import parse_seeds, run_sweep

    seed_values = _run_errors(parse_seeds, seeds, seed_list)
    summary = _run_errors(
        run_sweep,
        spec,
        seed_values,
        overrides=set_ or [],
        out=out,
        epochs=epochs,
        procs=procs,
        gpus=gpus,
        data_root=data_root,
    )
    typer.echo(summary["table"])


# ---------------------------------------------------------------------------- after training
@contextlib.contextmanager
def _quiet_spec_warnings():
    """A trained run's spec said its warnings when it was checked and trained: not again here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        yield


def _after_training(fn, *args, quiet: bool = True, **kwargs):
    """Call an inspect / draw / export function: an unreadable run or checkpoint exits 1, a
    spec error, a refused export or a bad output name exits 2, each in one line. `quiet`: a
    trained run (its spec's warnings were shown when it was trained)."""
    from wirelang.export.compact import ExportRefused
    from wirelang.export.draw import DrawError
    from wirelang.runs.layout import RunError

    try:
        with _quiet_spec_warnings() if quiet else contextlib.nullcontext():
            return fn(*args, **kwargs)
    except SpecError as err:
        fail_spec(err)
    except (ExportRefused, DrawError) as err:
        _err(f"error: {err}")
        raise typer.Exit(2) from None
    except RunError as err:
        _err(f"error: {err}")
        raise typer.Exit(err.exit_code) from None


_CHECKPOINT = typer.Option(
    "--checkpoint", help="A .pt file of the run (default best.pt, else last.pt)."
)


@app.command(name="inspect")
def inspect_(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    checkpoint: Annotated[Path | None, _CHECKPOINT] = None,
) -> None:
    """Show a run's learned wiring: edges per set pair, degrees, dead nodes, effective cost, churn."""
    from wirelang.export.inspect import inspect_run, print_report
    from wirelang.runs.load import load_run

    info = _after_training(lambda: inspect_run(load_run(run, checkpoint)))
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
    else:
        print_report(info)


@app.command(name="draw")
def draw_(
    source: Annotated[Path, typer.Argument(help="A spec (.wire) or a run directory.")],
    out: Annotated[Path, typer.Option("--out", help="The picture: FILE.png or FILE.svg.")],
    checkpoint: Annotated[Path | None, _CHECKPOINT] = None,
) -> None:
    """Draw a spec's candidate wiring and budget, or a run's learned wiring."""
    from wirelang.export.draw import draw
    from wirelang.runs.load import load_run, load_spec

    def picture() -> Path:
        if source.is_dir():
            run = load_run(source, checkpoint)
            return draw(run.net, out, run.model, run.label)
        return draw(load_spec(source), out)

    typer.echo(f"wrote {_after_training(picture, quiet=source.is_dir())}")


@app.command(name="export")
def export_(
    run: Annotated[
        Path, typer.Argument(help="A run directory, or a spec (.wire: its initial wiring).")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="The file to write (a folder for --format python).")
    ],
    format_: Annotated[
        str, typer.Option("--format", help="wire | edges | pt2 | onnx | python.")
    ] = "wire",
    checkpoint: Annotated[Path | None, _CHECKPOINT] = None,
    solver: Annotated[
        str | None,
        typer.Option(
            "--solver",
            help="Continuous time: unroll this fixed-step solver (euler, midpoint, rk4).",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option("--steps", help="Continuous time: the number of solver steps to unroll."),
    ] = None,
    batch: Annotated[
        int,
        typer.Option(
            "--batch", help="Batch size for the check and the latency figures (also at batch 1)."
        ),
    ] = 64,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object.")
    ] = False,
) -> None:
    """Export a run: a frozen .wire, its edges as JSON, or a compact model (pt2, ONNX, Python source).

    The compact model drops dead nodes and folds the masks into its weights.
    Blocks of edges run gathered or dense, whichever is faster at their density.
    The report compares it with the masked model (difference, size, latency) and with
    the dense twin: the network at the width that gives the same live multiply-adds,
    every graph complete.
    RUN may also be a spec: its model with the initial wiring is exported.

    Example: wirelang export runs/quickstart --format pt2 --out quickstart.pt2
    """
    from wirelang.export.programs import FORMATS, export_run, open_source, print_report

    if format_ not in FORMATS:
        _err(f"error: unknown format `{format_}`: choose one of {', '.join(FORMATS)}")
        raise typer.Exit(2)
    if solver is not None and solver not in ("euler", "midpoint", "rk4"):
        _err(f"error: --solver {solver}: choose euler, midpoint or rk4")
        raise typer.Exit(2)
    report = _after_training(
        lambda: export_run(
            open_source(run, checkpoint), format_, out, solver=solver, steps=steps, batch=batch
        ),
        quiet=run.is_dir(),
    )
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        print_report(report, say=typer.echo)


def main() -> None:
    try:
        app()
    except UserError as err:
        _err(f"error: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
