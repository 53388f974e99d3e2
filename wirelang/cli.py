"""The `wirelang` command: a thin Typer layer; each command calls one library function.

Exit codes: 0 success, 1 runtime failure (a missing dataset, a failing disk, ...), 2 a spec or
usage error. A spec error prints located messages, never a Python traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from wirelang.diagnostics import SpecError, render_error
from wirelang.version import LANGUAGE_VERSION, __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compile, train, inspect and export neural-network wirings (.wire specs).")


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


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print versions and exit.")] = False,
) -> None:
    pass


@app.command()
def check(files: Annotated[list[Path], typer.Argument(help="Spec files to check.")]) -> None:
    """Check specs; print every problem found; exit 2 if any file fails."""
    from wirelang.frontend import check_file
    from wirelang.diagnostics import render

    failed = 0
    for f in files:
        diags = check_file(f)
        if diags:
            failed += 1
            _err("\n\n".join(render(d) for d in diags) + "\n")
        else:
            typer.echo(f"{f}: ok")
    if failed:
        _err(f"{failed} of {len(files)} file{'s' if len(files) != 1 else ''} failed")
        raise typer.Exit(2)


@app.command(name="compile")
def compile_(
    file: Path,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the artifacts (IR, fx code, standalone module) here.")] = None,
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
        from wirelang.backend.artifacts import write_artifacts

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
    check_only: Annotated[bool, typer.Option("--check", help="Exit 1 if a file is not canonical; change nothing.")] = False,
    write: Annotated[bool, typer.Option("--write", "-w", help="Rewrite the files in place.")] = False,
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


def main() -> None:
    try:
        app()
    except UserError as err:
        _err(f"error: {err}")
        sys.exit(1)


if __name__ == "__main__":
    main()
