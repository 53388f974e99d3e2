"""Rich tables for the CLI: the compile summary."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table


def human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def plain_console() -> Console:
    """The terminal's width on a terminal; piped or redirected, wide enough that no table cell
    or number is cut short (rich assumes 80 columns otherwise)."""
    return Console() if sys.stdout.isatty() else Console(width=10_000, no_color=True)


def _kept(budget: int | None, pool: str | None) -> str:
    """A wiring's k, and the pool it comes from; just the pool when its members are ranked
    together (they hold the pool's k between them, none a fixed number)."""
    if budget is None:
        return f"pooled {pool}"
    return f"{budget:,}" + (f" (pool {pool})" if pool else "")


def print_summary(info: dict, console: Console | None = None) -> None:
    console = console or plain_console()
    c, h, w = info["input"]
    console.print(
        f"[bold]{info['name']}[/bold]: input {c}x{h}x{w}, {info['classes']} classes, "
        f"{human(info['params'])} parameters, {human(info['macs'])} multiply-adds at the budget"
    )
    if info["graphs"]:
        table = Table(
            "graph",
            "sets",
            "nodes",
            "candidates",
            "budget",
            "semantics",
            "wiring",
            "params",
            "MACs",
        )
        for g in info["graphs"]:
            sets = ", ".join(f"{s['name']}[{s['size']}]" for s in g["sets"])
            budget = _kept(g["budget"], g.get("pool"))
            table.add_row(
                g["name"],
                sets,
                str(g["nodes"]),
                f"{g['candidate_edges']:,}",
                budget,
                g["semantics"],
                g["wiring"],
                human(g["params"]),
                human(g["macs"]),
            )
        console.print(table)
    for p in info["pools"]:
        how = "" if p["allocate"] == "global" else f", allocated by {p['allocate']}"
        console.print(
            f"pool {p['name']}: {p['budget']:,} of {p['candidate_edges']:,} candidates over "
            f"{len(p['members'])} members{how}"
        )
    if info.get("sparse_layers"):
        table = Table("sparse layer", "op", "weights", "kept", "wiring")
        for s in info["sparse_layers"]:
            table.add_row(
                s["path"],
                s["op"],
                f"{s['candidates']:,}",
                _kept(s["budget"], s["pool"]),
                s["wiring"],
            )
        console.print(table)
    for note in info.get("notes", []):
        console.print(f"[dim]note: {note}[/dim]")
