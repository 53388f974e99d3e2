"""The `wirelang` command's entry point (the Typer app itself is `wirelang.commands`).

`wirelang check FILE...` is what editors, pre-commit hooks and CI run most, so it is answered
here without importing Typer; any other command line (options, `--help`, other commands) goes
to the Typer app. Both paths print through `check_files`, so output and exit codes are the same.
`from wirelang.cli import app` (and the other names of `wirelang.commands`) still works.
"""

from __future__ import annotations

import sys
from pathlib import Path


def check_files(files: list[Path]) -> int:
    """Check specs; print every problem found; return 2 if any file has an error, else 0."""
    from wirelang.diagnostics import render
    from wirelang.frontend import check_file

    failed = 0
    for f in files:
        diags = check_file(f)
        if diags:
            sys.stderr.write("\n\n".join(render(d) for d in diags).rstrip("\n") + "\n")
        if any(d.severity == "error" for d in diags):
            failed += 1
        else:
            warned = sum(d.severity == "warning" for d in diags)
            sys.stdout.write(f"{f}: ok" + (f" ({warned} warning{'s' if warned != 1 else ''})" if warned else "") + "\n")
    if failed:
        sys.stderr.write(f"{failed} of {len(files)} file{'s' if len(files) != 1 else ''} failed\n")
        return 2
    return 0


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "check" and not any(a.startswith("-") for a in args[1:]):
        sys.stdout.flush()
        sys.exit(check_files([Path(a) for a in args[1:]]))
    from wirelang.commands import main as typer_main

    typer_main()


def __getattr__(name: str):
    # `from wirelang.cli import app` and the other names the Typer layer defines; dunder
    # lookups (the import system asks for `__path__` on every `from wirelang.cli import x`)
    # must not pull Typer in
    if name.startswith("__"):
        raise AttributeError(name)
    import wirelang.commands

    return getattr(wirelang.commands, name)


if __name__ == "__main__":
    main()
