"""The training loop: one linear function from a prepared run directory to a trained model.

One CPU process, or one GPU:
    wirelang train specs/quickstart.wire                 # --gpus 1 for CUDA
DistributedDataParallel on one machine (NCCL on GPUs, gloo on CPU processes):
    wirelang train specs/cifar_tiny.wire --gpus 8
    wirelang train specs/quickstart.wire --procs 2
Several machines: the same command under torchrun, once per machine (node_rank 0 and 1 here;
--out on a filesystem every machine sees, so that --resume finds the checkpoints):
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --rdzv_backend c10d \
        --rdzv_endpoint HOST0:29500 -m wirelang train specs/cifar_tiny.wire --gpus 8 \
        --out /shared/runs/cifar_tiny-2x8

Every process runs `run` with the same plan. Rank 0 prints and writes the run directory; all
ranks hold identical weights and masks (DDP averages the gradients; the masks are a pure
function of the weights, and their hash is compared every epoch).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from wirelang.backend.api import compile_network
from wirelang.methods import WIRINGS
from wirelang.runs import checkpoint as ckpt
from wirelang.runs.layout import (
    BEST,
    CHECKPOINTS,
    LAST,
    PHASE1_LAST,
    MetricsLog,
    RunError,
    first_line,
    read_metrics,
)
from wirelang.train.data import eval_loader, load_splits, seed_epoch, train_loader
from wirelang.train.distributed import (
    Dist,
    all_agree,
    all_sum,
    gather_to_all,
    same_everywhere,
    sync_buffers,
)
from wirelang.train.metrics import StepLog, Window, edges_swapped, evaluate
from wirelang.train.optim import (
    WeightAverage,
    build_optimizer,
    clip_gradients,
    lr_factor,
    phases,
    set_lr,
)
from wirelang.train.progress import Progress
from wirelang.train.runs import RunPlan
from wirelang.train_config import TrainConfig
from wirelang.version import LANGUAGE_VERSION, __version__


@dataclass
class RunResult:
    """What `wirelang.train` returns: where the run is, its last metrics line, and the model."""

    run_dir: Path
    final: dict[str, Any] = field(default_factory=dict)  # the last metrics.jsonl line
    model: nn.Module | None = None  # the trained model (in the process that trained it)


@dataclass
class TrainState:
    """Where training stands: with the weights and the optimizer, everything a resumed run needs.
    Written into every checkpoint by `_payload` and read back in one place, `_restore`."""

    phase: int = 1
    epoch: int = 0  # finished epochs of `phase`
    best: dict[str, Any] | None = None  # the epoch best.pt holds: phase, epoch, val top-1
    # A checkpoint written inside epoch `epoch + 1`: its batch `step`, each rank's counters and
    # random state, the masks of the last epoch end and of the last metrics.csv row.
    within: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    step: int = 0  # optimizer steps done over the whole run (metrics.csv is cut back to it)

    def masks(self, model: nn.Module, device: torch.device) -> tuple[dict, dict]:
        """The active edges at the last epoch end and at the last metrics.csv row (what
        `edges_swapped` compares with): the model's own in a run at an epoch boundary."""
        if self.within is None:
            now = model.active_masks()
            return now, now
        last_epoch = self.within["previous_active"]
        last_row = self.within.get("row_active", last_epoch)
        return (
            {k: v.to(device) for k, v in last_epoch.items()},
            {k: v.to(device) for k, v in last_row.items()},
        )

    def begin_epoch(self, phase: int, epoch: int, rank: int) -> EpochCounters:
        """Fresh counters; or, in the epoch a checkpoint was written inside, its counters and
        this rank's random state (once: call it after `seed_epoch`)."""
        w = self.within
        if w is None or (phase, epoch) != (self.phase, w["epoch"]):
            return EpochCounters()
        self.within = None
        mine = w["ranks"][rank]
        ckpt.set_rng_state(mine["rng"])  # where the step left it
        return EpochCounters(
            batch=w["step"],
            loss_sum=mine["loss_sum"],
            correct=mine["correct"],
            seen=mine["seen"],
            shown=Window(*w.get("shown", (0.0, 0.0, 0.0))),
            window=Window(*w.get("window", (0.0, 0.0, 0.0))),
        )

    @classmethod
    def inside_epoch(
        cls,
        phase: int,
        epoch: int,
        best: dict[str, Any] | None,
        done: int,
        c: EpochCounters,
        masks: tuple[dict, dict],
        world_size: int,
    ) -> TrainState:
        """The state after batch `c.batch` of `epoch` (the ranks' counters are added when saved)."""
        within = {
            "epoch": epoch,
            "step": c.batch,  # batches done
            "world_size": world_size,
            "previous_active": {k: v.cpu() for k, v in masks[0].items()},
            "row_active": {k: v.cpu() for k, v in masks[1].items()},
            "shown": c.shown.state(),
            "window": c.window.state(),
        }
        return cls(phase, epoch - 1, best, within, step=done)


@dataclass
class EpochCounters:
    """An epoch so far: the first batch still to run; this rank's loss, hits and images (summed
    over the ranks at the epoch's end); every rank's since the epoch began (the progress line)
    and since the last metrics.csv row."""

    batch: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    shown: Window = field(default_factory=Window)
    window: Window = field(default_factory=Window)


@dataclass
class Loop:
    """Everything the steps of `run` share: the plan, the model and how it executes, the data,
    and three values that live across epochs (the weight average, which phase two restarts; the
    best epoch so far; the active edges at the last epoch end and the last metrics.csv row, for
    `edges_swapped`). What a resumed run needs of them is saved as a `TrainState`."""

    plan: RunPlan
    d: Dist
    progress: Progress
    model: nn.Module
    initial: dict[str, torch.Tensor]  # the weights before training: lottery_one_shot rewinds here
    phases: list
    memory_format: torch.memory_format
    cuda: bool
    # set by `_load_data`
    splits: Any = None
    loader: Any = None
    sampler: Any = None
    val_loader: Any = None
    test_loader: Any = None
    batches: int = 0  # per epoch, a multiple of `accumulate`, the same on every rank
    steps: int = 0  # optimizer steps per epoch: the schedule counts these
    # set by `_resume` and `_execution`
    ema: WeightAverage | None = None
    log: MetricsLog | None = None
    step_log: StepLog | None = None
    forward: Any = None
    no_sync: Any = None
    autocast: Any = nullcontext
    scaler: Any = None
    criterion: Any = None
    # across epochs
    best: dict[str, Any] | None = None
    epoch_masks: dict | None = None
    row_masks: dict | None = None

    @property
    def cfg(self) -> TrainConfig:
        return self.plan.config

    @property
    def run_dir(self) -> Path:
        return self.plan.run_dir

    def say(self, text: str) -> None:
        self.progress.say(text)

    def epochs_before(self, phase) -> int:
        """Epochs of the phases before `phase`: epochs and steps count across phases."""
        return sum(p.epochs for p in self.phases if p.number < phase.number)

    def steps_before(self, phase) -> int:
        return self.steps * self.epochs_before(phase)


def run(plan: RunPlan, d: Dist, progress: Progress | None = None) -> RunResult:
    """Train `plan` in this process (every rank runs it with the same plan)."""
    loop = _build(plan, d, progress or Progress(enabled=d.is_main))
    found = ckpt.resume_point(plan.run_dir, say=loop.say, spec_hash=plan.spec_hash)
    if found is not None and found[0].get("finished"):  # before it looks for its data
        resumed = found[0]
        if d.is_main:  # a run stopped after its last last.pt, before its best.pt
            ckpt.restore_best(plan.run_dir, found, loop.say)
        loop.say(
            f"{plan.run_dir} is finished (phase {resumed['phase']}, epoch {resumed['epoch']}); nothing to do"
        )
        return RunResult(plan.run_dir, _last_record(plan.run_dir))
    _load_data(loop)
    state = _resume(loop, found)
    _execution(loop)
    record: dict[str, Any] = {}
    for phase in loop.phases:
        if phase.number < state.phase:
            continue
        first_epoch = state.epoch if phase.number == state.phase else 0
        optimizer = _start_phase(loop, phase, state, fresh=first_epoch == 0)
        for epoch in range(first_epoch + 1, phase.epochs + 1):
            counters, lr, started = _train_epoch(loop, phase, epoch, optimizer, state)
            record, improved = _evaluate(loop, phase, epoch, counters, lr, started)
            state = _checkpoint(loop, phase, epoch, optimizer, record, improved)
    return _finish(loop, record)


def _build(plan: RunPlan, d: Dist, progress: Progress) -> Loop:
    """The model: every rank compiles the same initial weights and masks from the seed."""
    cfg = plan.config
    cuda = d.device.type == "cuda"
    if not cuda and (cfg.amp != "none" or cfg.channels_last):
        progress.say("note: amp and channels_last apply to CUDA only; ignored on CPU")
    model = compile_network(plan.net, seed=cfg.seed)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.to(d.device)
    memory_format = torch.channels_last if cuda and cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    return Loop(
        plan, d, progress, model, initial, phases(cfg, model.two_phase()), memory_format, cuda
    )


def _load_data(loop: Loop) -> None:
    """The splits and their loaders: the val split is held out of training; the test set is
    only reported."""
    cfg, plan, given = loop.cfg, loop.plan, loop.plan.given
    loop.splits = given.splits() if given is not None else load_splits(cfg, plan.net, plan.download)
    collate = given.collate_fn if given is not None else None
    loop.loader, loop.sampler = train_loader(loop.splits.train, cfg, loop.d, collate)
    loop.val_loader = eval_loader(loop.splits.val, cfg, loop.d, collate)
    loop.test_loader = eval_loader(loop.splits.test, cfg, loop.d, collate)
    loop.batches = len(loop.loader)
    loop.steps = loop.batches // cfg.accumulate


def _resume(loop: Loop, found: tuple[dict[str, Any], Path] | None) -> TrainState:
    """Continue after the last good checkpoint (`found`; None in a fresh run): the weights, the
    weight average, the random state, and where training stood. Opens the metrics files."""
    cfg, d, model = loop.cfg, loop.d, loop.model
    loop.ema = WeightAverage(model, cfg.ema) if cfg.ema else None
    state = TrainState()
    if found is not None:
        state = _restore(found, model, loop.ema, d, loop.phases, loop.steps)
        where = (
            f"epoch {state.epoch}"
            if state.within is None
            else f"epoch {state.within['epoch']}, step {state.within['step']}"
        )
        loop.say(f"resuming {loop.run_dir} from {found[1].name} (phase {state.phase}, {where})")
        if d.is_main:
            ckpt.restore_best(loop.run_dir, found, loop.say)
            end_of_phase1 = (state.phase, state.epoch) == (1, loop.phases[0].epochs)
            if len(loop.phases) > 1 and end_of_phase1 and state.within is None:
                ckpt.restore_phase1_last(loop.run_dir, found, loop.say)
    loop.log = MetricsLog(loop.run_dir)
    loop.step_log = StepLog(loop.run_dir, state.step, cfg.tensorboard) if d.is_main else None
    if d.is_main:  # lines past the checkpoint (all of them without one) were never kept
        loop.log.truncate_after(state.phase, state.epoch)
    loop.best = state.best
    loop.epoch_masks, loop.row_masks = state.masks(model, d.device)
    splits = loop.splits
    n_val = len(splits.val) if splits.val is not None else 0
    loop.say(
        f"{loop.plan.net.name}: {cfg.data.name} {len(splits.train)} train / {n_val} val / {len(splits.test or ())} test, "
        f"batch {cfg.batch} ({cfg.batch // d.world_size} x {d.world_size} {d.device.type})"
        + (f" x accumulate {cfg.accumulate}" if cfg.accumulate > 1 else "")
        + f", {model.count_params():,} parameters -> {loop.run_dir}"
    )
    return state


def _execution(loop: Loop) -> None:
    """How a batch runs: DDP across ranks, optional torch.compile, AMP on CUDA."""
    cfg, d, cuda = loop.cfg, loop.d, loop.cuda
    ddp = (
        DistributedDataParallel(loop.model, device_ids=[d.local_rank] if cuda else None)
        if d.is_distributed
        else loop.model
    )
    loop.forward = _CompileOrEager(ddp, loop.say) if cfg.compile else ddp
    loop.no_sync = ddp.no_sync if d.is_distributed else None
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    if cuda and amp_dtype:
        loop.autocast = partial(torch.autocast, "cuda", dtype=amp_dtype)
    loop.scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp == "fp16")
    loop.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)


def _start_phase(loop: Loop, phase, state: TrainState, fresh: bool):
    """The phase's optimizer (its saved state when the run resumes inside the phase). Phase two
    begins by fixing the masks (`_enter_phase_two`) unless it had already begun (`fresh`: no
    epoch of it is done)."""
    if phase.number == 2 and fresh and state.within is None:
        _enter_phase_two(loop.model, loop.initial, loop.say)
        if loop.ema is not None:  # the average restarts from the sparse network
            loop.ema = WeightAverage(loop.model, loop.cfg.ema)
        loop.best = None  # the best checkpoint is chosen among the sparse network's epochs
    optimizer = build_optimizer(loop.model, phase.optimizer)
    if state.optimizer is not None and phase.number == state.phase:
        optimizer.load_state_dict(state.optimizer)
        # a run that did not scale (CPU, bf16, fp32) saved an empty state: a scaler enabled
        # now (the run moved to a GPU with fp16) starts afresh instead of refusing it
        if state.scaler:
            loop.scaler.load_state_dict(state.scaler)
    return optimizer


def _train_epoch(
    loop: Loop, phase, epoch: int, optimizer, state: TrainState
) -> tuple[EpochCounters, float, float]:
    """One pass over the training split (the rest of it in the epoch a checkpoint was written
    inside): (this epoch's counters, the last learning rate, the time it started)."""
    cfg, d, steps = loop.cfg, loop.d, loop.steps
    seed_epoch(loop.loader, loop.sampler, cfg.seed, _data_epoch(loop, phase, epoch), d.rank)
    title = f"epoch {epoch}/{phase.epochs}"
    loop.progress.start_epoch(
        f"phase {phase.number} {title}" if len(loop.phases) > 1 else title, loop.batches
    )
    loop.model.train()
    started = time.perf_counter()
    c = state.begin_epoch(phase.number, epoch, d.rank)
    loop.sampler.start = c.batch  # a resumed epoch skips the batches it had done
    lr = math.nan
    for i, (x, y) in enumerate(loop.loader, start=c.batch):
        # batch i; with gradient accumulation, `accumulate` batches make one step
        step = (epoch - 1) * steps + i // cfg.accumulate  # within this phase: the schedule's
        last_of_step = (i + 1) % cfg.accumulate == 0
        if i % cfg.accumulate == 0:
            lr = set_lr(optimizer, lr_factor(step, steps, phase))
            loop.model.set_progress(step / (phase.epochs * steps))  # l1_anneal's threshold
            optimizer.zero_grad(set_to_none=True)
        done = loop.steps_before(phase) + step + 1  # optimizer steps over the whole run
        mean_loss, hits, hits_all, seen_all = _train_batch(
            loop, optimizer, x, y, last_of_step, (phase.number, epoch, done)
        )
        c.batch = i + 1
        c.loss_sum += mean_loss * len(y)
        c.correct += hits
        c.seen += len(y)
        c.shown.add(mean_loss * seen_all, hits_all, seen_all)
        c.window.add(mean_loss * seen_all, hits_all, seen_all)
        shown = c.shown
        loop.progress.step(
            i + 1, shown.loss_sum / shown.seen, shown.correct / shown.seen, int(shown.seen)
        )
        if last_of_step and (done % cfg.log_every == 0 or i + 1 == loop.batches):
            _log_steps(loop, c, phase.number, epoch, done, lr)
        checkpoint_due = (
            cfg.checkpoint_steps and (i + 1) // cfg.accumulate % cfg.checkpoint_steps == 0
        )
        if last_of_step and checkpoint_due and i + 1 < loop.batches:
            _checkpoint_within(loop, phase, epoch, optimizer, c, done, step + 1)
    loop.sampler.start = 0
    return c, lr, started


def _train_batch(
    loop: Loop, optimizer, x: torch.Tensor, y: torch.Tensor, last_of_step: bool, where: tuple
) -> tuple[float, int, float, float]:
    """Forward and backward for one batch, and the optimizer step when it ends one: (the loss
    averaged over the ranks, this rank's hits, every rank's hits and images)."""
    cfg, d, model = loop.cfg, loop.d, loop.model
    x = x.to(d.device, non_blocking=True).contiguous(
        memory_format=loop.memory_format
    )  # (b, C, H, W)
    y = y.to(d.device, non_blocking=True)  # (b,)
    accumulate = cfg.accumulate
    # DDP averages gradients over ranks at the batch that ends a step only
    sync = loop.no_sync if loop.no_sync is not None and not last_of_step else nullcontext
    with sync():
        with loop.autocast():
            logits = loop.forward(x)  # (b, classes)
            loss = loop.criterion(logits.float(), y) + model.regularization().to(d.device)
        hits = int((logits.argmax(1) == y).sum())
        # One small all-reduce per batch: every rank's loss, hits and images for the log, and
        # a non-finite loss on any rank is seen by every rank at the same batch, so all stop
        # together.
        loss_all, hits_all, seen_all = all_sum(d, [loss.item(), hits, len(y)])
        mean_loss = loss_all / d.world_size
        if not math.isfinite(mean_loss):
            phase, epoch, done = where
            _stop_non_finite(mean_loss, done, phase, epoch, loop.run_dir, d)
        loop.scaler.scale(loss / accumulate if accumulate > 1 else loss).backward()
    if last_of_step:
        if cfg.clip_grad:
            loop.scaler.unscale_(optimizer)  # the bound is on the true gradient's norm
            clip_gradients(model, cfg.clip_grad)
        loop.scaler.step(optimizer)
        loop.scaler.update()
        if loop.ema is not None:
            loop.ema.update(model)
    return mean_loss, hits, hits_all, seen_all


def _log_steps(loop: Loop, c: EpochCounters, phase: int, epoch: int, done: int, lr: float) -> None:
    """A metrics.csv row for the steps since the last one (rank 0 writes it)."""
    if loop.step_log is not None:
        active = loop.model.active_masks()
        swapped = sum(edges_swapped(loop.row_masks, active).values())
        loop.step_log.append(c.window.row(phase, epoch, done, lr, swapped))
        loop.row_masks = active
    c.window = Window()


def _evaluate(
    loop: Loop, phase, epoch: int, c: EpochCounters, lr: float, started: float
) -> tuple[dict[str, Any], bool]:
    """The end of an epoch: (its metrics.jsonl line, whether it is the best so far). Measures
    the validation split (the test split after the last epoch), checks that the ranks agree."""
    d, model, ema = loop.d, loop.model, loop.ema
    model.set_progress(epoch / phase.epochs)
    loss_total, correct, seen = all_sum(d, [c.loss_sum, c.correct, c.seen])
    sync_buffers(d, model)
    val, ema_val = _measure(loop, loop.val_loader)
    nfe = model.nfe()  # function evaluations of the last (validation) forward pass
    mask_hash = model.mask_hash()
    if not same_everywhere(d, mask_hash):
        raise RunError(
            f"the masks differ between processes after phase {phase.number} epoch {epoch}; stopped",
            quiet=not d.is_main,
        )
    active = model.active_masks()
    record = {
        "epoch": epoch,
        "phase": phase.number,
        "step": loop.steps_before(phase) + epoch * loop.steps,
        "lr": lr,
        "train_loss": loss_total / seen,
        "train_top1": correct / seen,
        **_figures("val", val),
        "time_s": time.perf_counter() - started,
        "edges_swapped": edges_swapped(loop.epoch_masks, active),
        "mask_hash": mask_hash,
        "seed": loop.cfg.seed,
        "spec_hash": loop.plan.spec_hash,
    }
    if ema is not None:
        record.update(_figures("ema_val", ema_val))
    loop.epoch_masks = active
    if nfe:
        record["nfe"] = nfe
    # The checkpoints hand out the weight average when there is one: the best epoch is chosen
    # by its top-1. Without a validation split the best is the last.
    chosen = ema_val if ema is not None else val
    best = loop.best
    improved = best is None or chosen is None or chosen["top1"] > best["val_top1"]
    if improved:
        loop.best = {"phase": phase.number, "epoch": epoch, "val_top1": chosen and chosen["top1"]}
    if _is_last(loop, phase, epoch):  # the test set is looked at once, at the very end
        test, ema_test = _measure(loop, loop.test_loader)  # None: a folder without a test split
        record.update(_figures("test", test))
        if ema is not None:
            record.update(_figures("ema_test", ema_test))
        record.update(
            best_phase=loop.best["phase"],
            best_epoch=loop.best["epoch"],
            best_val_top1=loop.best["val_top1"],
            best_by="ema_val_top1" if ema is not None else "val_top1",
        )
    return record, improved


def _checkpoint(
    loop: Loop, phase, epoch: int, optimizer, record: dict[str, Any], improved: bool
) -> TrainState:
    """The epoch's metrics.jsonl line, then last.pt (and best.pt when `improved`,
    phase1_last.pt), each followed by checkpoints/manifest.json: the state a resumed run
    starts from, which is returned."""
    d, cfg = loop.d, loop.cfg
    loop.progress.end_epoch(record)
    if loop.step_log is not None:
        loop.step_log.epoch(record)
    state = TrainState(phase=phase.number, epoch=epoch, best=loop.best, step=record["step"])
    finished = _is_last(loop, phase, epoch)
    payload = _payload(
        loop.model,
        loop.ema,
        optimizer,
        loop.scaler,
        d,
        state,
        scheduler=_schedule(phase, loop.steps, epoch * loop.steps),
        rng=ckpt.rng_state(),
        sampler={"seed": cfg.seed, "epoch": _data_epoch(loop, phase, epoch)},
        seed=cfg.seed,
        spec_hash=loop.plan.spec_hash,
        mask_hash=record["mask_hash"],
        finished=finished,
    )
    # The metrics line goes first: a crash before the checkpoint lands only repeats this epoch
    # on resume (lines past the checkpoint are dropped then).
    end_of_phase1 = phase.number == 1 and len(loop.phases) > 1 and epoch == phase.epochs
    error = (
        _write_epoch(loop.run_dir, loop.log, record, payload, improved, end_of_phase1)
        if d.is_main
        else None
    )
    if not all_agree(d, error is None):
        raise error or RunError("rank 0 could not write its checkpoint; stopped", quiet=True)
    return state


def _finish(loop: Loop, record: dict[str, Any]) -> RunResult:
    loop.progress.close()
    if loop.step_log is not None:
        loop.step_log.close()
    if record:
        test, best = record["test_top1"], record["best_val_top1"]
        loop.say(
            "done: test top1 "
            + ("n/a" if test is None else f"{100 * test:.2f}%")
            + ", best val top1 "
            + ("n/a" if best is None else f"{100 * best:.2f}%")
            + (" (weight average)" if loop.ema is not None else "")
            + f" (phase {loop.best['phase']} epoch {loop.best['epoch']}) -> {loop.run_dir}"
        )
    return RunResult(loop.run_dir, record, loop.model.eval())


def _measure(loop: Loop, loader: Any) -> tuple[dict | None, dict | None]:
    """The model's figures on a split, and its weight average's (None without `ema`)."""
    channels_last = loop.cuda and loop.cfg.channels_last
    own = evaluate(loop.model, loader, loop.d, loop.autocast, channels_last)
    if loop.ema is None:
        return own, None
    with loop.ema.swapped_into(loop.model):
        return own, evaluate(loop.model, loader, loop.d, loop.autocast, channels_last)


def _data_epoch(loop: Loop, phase, epoch: int) -> int:
    """The epoch counted across phases: the key of the data order."""
    return loop.epochs_before(phase) + epoch


def _is_last(loop: Loop, phase, epoch: int) -> bool:
    return phase is loop.phases[-1] and epoch == phase.epochs


def _enter_phase_two(model: nn.Module, initial: dict[str, torch.Tensor], say) -> None:
    """End of phase one: fix the top-k edges of the trained weights; the lottery ticket then
    starts again from the initial weights, keeping only the mask."""
    model.freeze_topk()
    lottery = WIRINGS[model.two_phase()].second_phase == "rewind"
    if lottery:
        rewind(model, initial)
    say(
        f"phase 2 ({model.two_phase()}): top-k masks fixed"
        + (", weights rewound to their initial values" if lottery else "")
    )


def _figures(prefix: str, result: dict[str, float] | None) -> dict[str, float | None]:
    """`val_loss`, `val_top1`, `val_top5` (for prefix `val`) of an evaluation, None without one."""
    return {f"{prefix}_{k}": result and result[k] for k in ("loss", "top1", "top5")}


def _schedule(phase, steps: int, done: int) -> dict[str, Any]:
    """The schedule's position (`done`: optimizer steps of this phase so far), for readers."""
    return {"name": phase.schedule.name, "step": done, "steps_per_epoch": steps}


def _payload(
    model: nn.Module,
    ema: WeightAverage | None,
    optimizer,
    scaler,
    d: Dist,
    state: TrainState,
    **fields: Any,
) -> dict:
    """What every checkpoint holds: the weights (`model`: the weight average's with `ema`, the
    trained ones then in `train_model`), the optimizer, the `state`, and `fields` (`scheduler`,
    `rng`, `seed`, hashes, `finished`). `epoch` counts finished epochs; `within` is set inside
    an epoch."""
    weights = (
        {"model": ema.state_dict(model), "train_model": model.state_dict()}
        if ema is not None
        else {"model": model.state_dict()}
    )
    payload = {
        **weights,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "phase": state.phase,
        "epoch": state.epoch,
        "best": state.best,
        "step": state.step,
        "world_size": d.world_size,
        "wirelang_version": __version__,
        "language_version": LANGUAGE_VERSION,
        **fields,
    }
    if state.within is not None:
        payload["within"] = state.within
    return payload


def _restore(
    found: tuple[dict[str, Any], Path],
    model: nn.Module,
    ema: WeightAverage | None,
    d: Dist,
    plan_phases: list,
    steps: int,
) -> TrainState:
    """Load a checkpoint's weights, weight average and random state; return where it stood."""
    resumed, path = found
    model.load_state_dict(resumed.get("train_model", resumed["model"]))
    if ema is not None:
        ema.load(resumed["model"])
    ckpt.set_rng_state(resumed["rng"])
    within = resumed.get("within")
    if within is not None and within["world_size"] != d.world_size:
        raise RunError(
            f"{path} was written inside epoch {within['epoch']} by {within['world_size']} "
            f"process(es); resume it with as many (--procs/--gpus {within['world_size']})",
            2,
        )
    phase, epoch = int(resumed["phase"]), int(resumed["epoch"])
    offset = sum(p.epochs for p in plan_phases if p.number < phase)
    step = resumed.get("step")
    if step is None:  # written before checkpoints carried it
        step = (offset + epoch) * steps
    # the optimizer continues only where its phase continues (not at a phase's first epoch)
    keep = epoch > 0 or within is not None
    return TrainState(
        phase=phase,
        epoch=epoch,
        best=resumed["best"],
        within=within,
        optimizer=resumed["optimizer"] if keep else None,
        scaler=resumed["scaler"] if keep else None,
        step=int(step),
    )


def _checkpoint_within(
    loop: Loop, phase, epoch: int, optimizer, c: EpochCounters, done: int, phase_steps: int
) -> None:
    """last.pt in the middle of an epoch, after batch `c.batch` (`done` optimizer steps over the
    run, `phase_steps` in this phase): a resumed run continues there exactly as if it had never
    stopped (with data.workers = 0; worker processes draw their augmentation afresh)."""
    d = loop.d
    state = TrainState.inside_epoch(
        phase.number, epoch, loop.best, done, c, (loop.epoch_masks, loop.row_masks), d.world_size
    )
    ranks = gather_to_all(
        d, {"loss_sum": c.loss_sum, "correct": c.correct, "seen": c.seen, "rng": ckpt.rng_state()}
    )
    error = None
    if d.is_main:
        state.within["ranks"] = ranks
        payload = _payload(
            loop.model,
            loop.ema,
            optimizer,
            loop.scaler,
            d,
            state,
            scheduler=_schedule(phase, loop.steps, phase_steps),
            rng=ranks[0]["rng"],
            seed=loop.cfg.seed,
            spec_hash=loop.plan.spec_hash,
            mask_hash=loop.model.mask_hash(),
            finished=False,
        )
        try:
            ckpt.write(loop.run_dir / CHECKPOINTS, LAST, payload)
        except RunError as err:
            error = err
        except OSError as err:
            error = RunError(f"cannot write a checkpoint in {loop.run_dir}: {err.strerror or err}")
    if not all_agree(d, error is None):
        raise error or RunError("rank 0 could not write its checkpoint; stopped", quiet=True)


def _write_epoch(
    run_dir: Path, log: MetricsLog, record: dict, payload: dict, improved: bool, end_of_phase1: bool
) -> RunError | None:
    folder = run_dir / CHECKPOINTS
    try:
        log.append(record)
        # each file, then the manifest that records it (checkpoint.write)
        ckpt.write(folder, LAST, payload)
        if improved:
            ckpt.write(folder, BEST, payload)
        if end_of_phase1:
            ckpt.write(folder, PHASE1_LAST, payload)
    except RunError as err:
        return err
    except OSError as err:
        return RunError(f"cannot write {log.path}: {err.strerror or err}")
    return None


def rewind(model: nn.Module, initial: dict[str, torch.Tensor]) -> None:
    """Every weight and buffer back to `initial`, except the masks fixed by `freeze_topk`."""
    now = model.state_dict()
    model.load_state_dict({k: now[k] if is_mask_buffer(k) else v for k, v in initial.items()})


def is_mask_buffer(key: str) -> bool:
    last = key.rsplit(".", 1)[-1]
    return last == "phase" or (last.startswith("fixed_") and last[6:].isdigit())


def _stop_non_finite(
    value: float, step: int, phase: int, epoch: int, run_dir: Path, d: Dist
) -> None:
    # rank 0 alone touches the files; every rank stops
    kept = ckpt.set_aside_diverged(run_dir, step) if d.is_main else ""
    # Training is deterministic: resuming with the same settings diverges at the same step.
    raise RunError(
        f"loss is {value} at step {step} (phase {phase}, epoch {epoch}); stopped, {kept}. "
        "The same settings diverge again: start a new run with a lower learning rate "
        "(--set optimizer.lr=...), a warm-up (--set warmup=1), or a normalising operator on the "
        "nodes that feed back into themselves",
        quiet=not d.is_main,
    )


def _last_record(run_dir: Path) -> dict[str, Any]:
    records = read_metrics(run_dir)
    return records[-1] if records else {}


class _CompileOrEager:
    """torch.compile'd forward, falling back to eager (with one warning) if compiling fails."""

    def __init__(self, module: nn.Module, say):
        self.eager, self.compiled, self.say = module, torch.compile(module), say

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                return self.compiled(x)
            except Exception as err:  # any failure inside dynamo/inductor: eager still works
                self.compiled = None
                self.say(
                    f"warning: torch.compile failed ({first_line(err)[:200]}); continuing in eager mode"
                )
        return self.eager(x)
