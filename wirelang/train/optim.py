"""Optimizers and learning-rate schedules, and the settings of each training phase.

The schedule is a pure function of the step (`lr_factor`), applied by hand every step as
nanochat does: nothing to pickle but the step count, and resuming cannot drift.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from wirelang.methods import WIRINGS
from wirelang.runs.layout import RunError
from wirelang.train_config import OptimizerConfig, ScheduleConfig, TrainConfig

FINE_TUNE_LR = 0.01  # phase two of `fine_tune` when phase2 names no optimizer


@dataclass(frozen=True)
class Phase:
    """One phase of training: `number` 1, or 2 for the second phase of a two-phase wiring."""

    number: int
    epochs: int
    optimizer: OptimizerConfig
    schedule: ScheduleConfig
    warmup: int  # epochs of linear warm-up


def phases(config: TrainConfig, two_phase: str | None) -> list[Phase]:
    """Phase one from the train block; phase two (if the network's wiring method `two_phase` has
    one) from `phase2`, unset fields repeated."""
    first = Phase(1, config.epochs, config.optimizer, config.schedule, config.warmup)
    if two_phase is None:
        return [first]
    p2 = config.phase2
    optimizer = p2.optimizer if p2 is not None and p2.optimizer is not None else None
    if optimizer is None:
        # continuing a trained network (fine_tune): a smaller step than from scratch by default
        optimizer = (
            config.optimizer.model_copy(update={"lr": FINE_TUNE_LR})
            if WIRINGS[two_phase].second_phase == "continue"
            else config.optimizer
        )
    second = Phase(
        2,
        p2.epochs if p2 is not None and p2.epochs is not None else config.epochs,
        optimizer,
        p2.schedule if p2 is not None and p2.schedule is not None else config.schedule,
        p2.warmup if p2 is not None and p2.warmup is not None else config.warmup,
    )
    return [first, second]


def build_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.name == "sgd":
        if cfg.nesterov and cfg.momentum == 0:
            raise RunError("optimizer: nesterov needs momentum > 0", 2)
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov,
            weight_decay=cfg.weight_decay,
        )
    else:
        opt = torch.optim.AdamW(
            params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
        )
    for group in opt.param_groups:
        group["initial_lr"] = cfg.lr  # set_lr scales this, so the schedule never compounds
    return opt


def lr_factor(step: int, steps_per_epoch: int, phase: Phase) -> float:
    """The multiplier of the base lr at `step` (0-based, counted within the phase)."""
    total = phase.epochs * steps_per_epoch
    warm = min(phase.warmup * steps_per_epoch, total)
    if step < warm:
        return (step + 1) / warm  # linear, reaching the base lr at the end of warm-up
    s = phase.schedule
    if s.name == "multistep":
        epoch = step // steps_per_epoch  # milestone m: divide from the start of epoch m+1 (1-based)
        return s.gamma ** sum(1 for m in s.milestones if epoch >= m)
    if s.name == "cosine":
        t = (step - warm) / max(1, total - warm)
        floor = s.min_lr / phase.optimizer.lr
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return 1.0


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return optimizer.param_groups[0]["lr"]


class WeightAverage:
    """An exponential moving average of a model's weights (timm's ModelEmaV2, by hand: torch's
    AveragedModel would also average buffers that are state, not weights).

    After each optimizer step every parameter and normalisation running statistic
    e <- decay * e + (1 - decay) * w. The other buffers (masks fixed by `freeze_topk`, training
    progress, counters) are not averaged: `state_dict` takes the model's own. It starts from the
    weights it is given.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        keys = averaged_keys(model)
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items() if k in keys}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for key, w in model.state_dict().items():
            if key in self.state:
                self.state[key].mul_(self.decay).add_(w.detach(), alpha=1 - self.decay)

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """The averaged tensors of a checkpoint's `state_dict` (a resumed run)."""
        self.state = {k: state[k].to(v.device) for k, v in self.state.items()}

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state with the averaged tensors in place of its own."""
        return {k: self.state.get(k, v) for k, v in model.state_dict().items()}

    @contextmanager
    def swapped_into(self, model: nn.Module) -> Iterator[None]:
        """`model` holds the average inside the block (to evaluate it), its own weights after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state_dict(model))
        try:
            yield
        finally:
            model.load_state_dict(own)


def averaged_keys(model: nn.Module) -> set[str]:
    """The state_dict keys a weight average averages: parameters and running statistics."""
    running = {
        key
        for key, value in model.state_dict().items()
        if key.endswith((".running_mean", ".running_var")) and value.is_floating_point()
    }
    return {name for name, _ in model.named_parameters()} | running


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Scale every gradient so that their global L2 norm is at most `max_norm`; the norm before."""
    params = [p for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
