"""What a run measures: accuracy over a split, edge churn, and the metrics.jsonl log.

Every epoch appends one JSON object to metrics.jsonl:
    epoch, phase, step, lr, train_loss, train_top1, val_loss, val_top1, val_top5 (fractions),
    time_s, edges_swapped {wiring: edges that entered the active set since the last epoch},
    mask_hash, seed, spec_hash, nfe {graph: function evaluations} for continuous graphs;
and the last line adds test_loss, test_top1, test_top5 (and best_phase, best_epoch, best_val_top1:
the epoch best.pt holds, chosen by val_top1 among the last phase's epochs).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

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
