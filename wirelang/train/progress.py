"""Rank 0's view of training: rich progress bars in a terminal, plain lines elsewhere.

Plain lines (stdout not a terminal, or CI set) keep logs readable: a few lines per epoch and
one summary line at its end. Other ranks print nothing.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

PLAIN_LINES_PER_EPOCH = 4


def fancy_terminal() -> bool:
    return sys.stdout.isatty() and not os.environ.get("CI")


def _eta(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class Progress:
    """`start_epoch`, then `step` per batch, then `end_epoch`; `say` for any other line."""

    def __init__(self, enabled: bool, fancy: bool | None = None):
        self.enabled = enabled
        self.fancy = fancy_terminal() if fancy is None else fancy
        self._bar: Any = None
        self._task: Any = None
        if enabled and self.fancy:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, highlight=False, markup=False)
        else:
            print(text, flush=True)

    def start_epoch(self, title: str, steps: int) -> None:
        self.title, self.steps, self.t0 = title, steps, time.perf_counter()
        self._every = max(1, steps // PLAIN_LINES_PER_EPOCH)
        if self._bar is not None:
            self._task = self._bar.add_task(title, total=steps, stats="")

    def step(self, done: int, loss: float, top1: float, images: int) -> None:
        """`done` steps finished; running mean loss and top-1; images seen this epoch (all ranks)."""
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.t0
        stats = (
            f"loss {loss:.4f}  top1 {100 * top1:5.2f}%  {images / max(elapsed, 1e-9):,.0f} img/s"
        )
        if self._bar is not None:
            self._bar.update(self._task, completed=done, stats=stats)
        elif done % self._every == 0 or done == self.steps:
            eta = elapsed / done * (self.steps - done)
            print(f"{self.title}  step {done}/{self.steps}  {stats}  eta {_eta(eta)}", flush=True)

    def end_epoch(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.remove_task(self._task)
        val = (
            ""
            if record.get("val_top1") is None
            else (
                f"  val loss {record['val_loss']:.4f} top1 {100 * record['val_top1']:.2f}% top5 {100 * record['val_top5']:.2f}%"
            )
        )
        if record.get("ema_val_top1") is not None:
            val += f"  ema top1 {100 * record['ema_val_top1']:.2f}%"  # the weight average's
        swapped = sum(record.get("edges_swapped", {}).values())
        self.say(
            f"{self.title}  train loss {record['train_loss']:.4f} top1 {100 * record['train_top1']:.2f}%{val}"
            f"  lr {record['lr']:.4g}  edges swapped {swapped}  {record['time_s']:.1f}s"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
