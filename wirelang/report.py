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
            budget = f"pooled {g['pool']}" if g.get("pool") else f"{g['budget']:,}"
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
        console.print(
            f"pool {p['name']}: {p['budget']:,} of {p['candidate_edges']:,} candidates over {len(p['members'])} members"
        )
    if info.get("sparse_layers"):
        table = Table("sparse layer", "op", "weights", "kept", "wiring")
        for s in info["sparse_layers"]:
            table.add_row(
                s["path"],
                s["op"],
                f"{s['candidates']:,}",
                f"pooled {s['pool']}" if s["pool"] else f"{s['budget']:,}",
                s["wiring"],
            )
        console.print(table)
    for note in info.get("notes", []):
        console.print(f"[dim]note: {note}[/dim]")
