"""The `wirelang` command's entry point.

`wirelang check FILE...` is what editors, pre-commit hooks and CI run most, so it is answered
here without importing Typer or torch (`check.py`); any other command line (options, `--help`,
other commands) goes to the Typer app in `commands.py`. Both paths print through
`check_files`, so output and exit codes are the same.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wirelang.cli.check import check_files


def main() -> None:
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "check" and not any(a.startswith("-") for a in args[1:]):
        sys.stdout.flush()
        sys.exit(check_files([Path(a) for a in args[1:]]))
    from wirelang.cli.commands import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()
