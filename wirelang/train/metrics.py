"""What a run measures: accuracy over a split, edge churn, and the metrics.jsonl log.

Every epoch appends one JSON object to metrics.jsonl:
    epoch, phase, step, lr, train_loss, train_top1, val_loss, val_top1, val_top5 (fractions),
    time_s, edges_swapped {wiring: edges that entered the active set since the last epoch},
    mask_hash, seed, spec_hash, nfe {graph: function evaluations} for continuous graphs;
and the last line adds test_loss, test_top1, test_top5 (and best_phase, best_epoch, best_val_top1:
the epoch best.pt holds, chosen by val_top1 among the last phase's epochs). With `ema` on, each
line also has ema_val_loss, ema_val_top1, ema_val_top5 (the weight average's; val_* stay the
trained weights'), the last line ema_test_*, and the best epoch is chosen by ema_val_top1
(`best_by` names the figure).

Every `log_every` optimizer steps, and at the end of every epoch, rank 0 appends a row to
metrics.csv (`STEP_COLUMNS`; loss and top-1 over every rank's batches since the previous row,
edges that entered the active set since then, images per second of all ranks), and the same
scalars to TensorBoard when `tensorboard` is on.
"""

from __future__ import annotations

import csv
import io
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from wirelang.runs.layout import STEP_METRICS, TENSORBOARD, RunError, write_text_atomic
from wirelang.train.distributed import Dist, all_sum

REQUIRED = (
    "epoch",
    "phase",
    "lr",
    "train_loss",
    "train_top1",
    "val_loss",
    "val_top1",
    "val_top5",
    "time_s",
    "edges_swapped",
    "mask_hash",
    "seed",
    "spec_hash",
)


def correct_topk(logits: Tensor, y: Tensor, ks: tuple[int, ...] = (1, 5)) -> list[int]:
    """Items whose label is among the top k logits, for each k (capped at the class count)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices  # (B, k)
    hit = top == y[:, None]
    return [int(hit[:, :k].any(1).sum()) for k in ks]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader | None,
    d: Dist,
    autocast=nullcontext,
    channels_last: bool = False,
) -> dict[str, float] | None:
    """Mean loss, top-1 and top-5 over the whole split (every rank's shard summed)."""
    if loader is None:
        return None
    was_training = model.training
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for x, y in loader:
        x, y = x.to(d.device, non_blocking=True), y.to(d.device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(x)  # (B, classes)
        loss_sum += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        c1, c5 = correct_topk(logits, y)
        top1, top5, n = top1 + c1, top5 + c5, n + len(y)
    model.train(was_training)
    loss_sum, top1, top5, n = all_sum(d, [loss_sum, top1, top5, n])
    return {"loss": loss_sum / max(n, 1), "top1": top1 / max(n, 1), "top5": top5 / max(n, 1)}


def edges_swapped(before: dict[str, Tensor], after: dict[str, Tensor]) -> dict[str, int]:
    """Per wiring, how many edges are active now that were not in `before`."""
    return {
        name: int((now & ~before[name]).sum()) if name in before else 0
        for name, now in after.items()
    }


# ---------------------------------------------------------------------------- per-step log
STEP_COLUMNS = ("phase", "epoch", "step", "loss", "lr", "top1", "edges_swapped", "img_s")


def require_tensorboard() -> None:
    """`tensorboard true` without the package: a usage error before the run folder exists."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise RunError(
            "tensorboard is on but the tensorboard package is not installed: "
            "pip install 'wirelang[tensorboard]' (or drop --set tensorboard=true); "
            "metrics.csv holds the same scalars",
            2,
        ) from None


class Window:
    """Every rank's batches since the last metrics.csv row: summed loss, hits and images."""

    def __init__(self, loss_sum: float = 0.0, correct: float = 0.0, seen: float = 0.0):
        self.loss_sum, self.correct, self.seen = loss_sum, correct, seen
        self.t0 = time.perf_counter()  # img/s is measured from here (a resumed run: from resuming)

    def add(self, loss_sum: float, correct: float, seen: float) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.seen += seen

    def state(self) -> list[float]:
        return [self.loss_sum, self.correct, self.seen]

    def row(self, phase: int, epoch: int, step: int, lr: float, swapped: int) -> dict[str, Any]:
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        n = max(self.seen, 1)
        return {
            "phase": phase,
            "epoch": epoch,
            "step": step,
            "loss": self.loss_sum / n,
            "lr": lr,
            "top1": self.correct / n,
            "edges_swapped": swapped,
            "img_s": self.seen / elapsed,
        }


def read_step_rows(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv as dicts of numbers, up to the first damaged row (a crash mid-write)."""
    path = Path(run_dir) / STEP_METRICS
    if not path.is_file():
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(path.read_text(encoding="utf-8", errors="replace"))):
        try:
            rows.append({k: _number(row[k]) for k in STEP_COLUMNS})
        except (KeyError, TypeError, ValueError):
            break
    return rows


def _number(text: str) -> float | int:
    return int(text) if text.lstrip("-").isdigit() else float(text)


class StepLog:
    """metrics.csv and TensorBoard, written by rank 0. Opening it drops the rows past `step`,
    the optimizer step the run continues from (0 for a fresh run), so that a resumed run does
    not repeat rows it logged after its last checkpoint."""

    def __init__(self, run_dir: Path, step: int, tensorboard: bool):
        self.path = Path(run_dir) / STEP_METRICS
        keep = [r for r in read_step_rows(run_dir) if r["step"] <= step]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, STEP_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep)
        write_text_atomic(self.path, buffer.getvalue())
        self.board = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: TensorBoard hides events at or past it from earlier sessions
            self.board = SummaryWriter(str(Path(run_dir) / TENSORBOARD), purge_step=step + 1)

    def append(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            csv.DictWriter(f, STEP_COLUMNS, lineterminator="\n").writerow(row)
        if self.board is not None:
            for key in ("loss", "lr", "top1", "edges_swapped", "img_s"):
                self.board.add_scalar(f"train/{key}", row[key], row["step"])

    def epoch(self, record: dict[str, Any]) -> None:
        """The epoch's validation figures, as TensorBoard scalars at its last step."""
        if self.board is None:
            return
        for key, value in record.items():
            if key.startswith(("val_", "ema_val_", "test_", "ema_test_")) and value is not None:
                self.board.add_scalar(key.replace("_", "/", 1), value, record["step"])
        self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
