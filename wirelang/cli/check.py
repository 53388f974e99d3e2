"""`wirelang check FILE...`: print every problem of each spec; torch-free and Typer-free."""

from __future__ import annotations

import sys
from pathlib import Path

from wirelang.diagnostics import render
from wirelang.frontend import check_file


def check_files(files: list[Path]) -> int:
    """Check specs; print every problem found; return 2 if any file has an error, else 0."""
    failed = 0
    for f in files:
        diags = check_file(f)
        if diags:
            sys.stderr.write("\n\n".join(render(d) for d in diags).rstrip("\n") + "\n")
        if any(d.severity == "error" for d in diags):
            failed += 1
        else:
            warned = sum(d.severity == "warning" for d in diags)
            sys.stdout.write(
                f"{f}: ok"
                + (f" ({warned} warning{'s' if warned != 1 else ''})" if warned else "")
                + "\n"
            )
    if failed:
        sys.stderr.write(f"{failed} of {len(files)} file{'s' if len(files) != 1 else ''} failed\n")
        return 2
    return 0
