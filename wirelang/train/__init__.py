"""Training: `wirelang train`, `wirelang eval` and `wirelang sweep` as library functions, and
`wirelang.train(spec, train_data=..., val_data=...)` on your own torch datasets: calling this
package calls `fit` (see its docstring).

    >>> import torch, wirelang
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.randn(64, 3, 16, 16), torch.randint(0, 2, (64,)))
    >>> r = wirelang.train("tiny.wire", train_data=data, val_data=data, out="runs/t", epochs=2)
    >>> model = wirelang.load(r.run_dir)                                 # the best checkpoint
    >>> wirelang.train(resume="runs/t", train_data=data, val_data=data)  # after a crash

The command line's trainer, as data:

    >>> from wirelang.train import TrainOptions, train
    >>> result = train(TrainOptions(spec="specs/quickstart.wire", epochs=1))
    >>> result.final["val_top1"], result.run_dir


One module per job: runs (run directory, settings, resume), distributed (processes), data
(splits and samplers), optim (optimizer, schedules, phases), loop (the training loop),
checkpoint, metrics, progress, sweep. torch is imported only by the functions that need it.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wirelang.runs.layout import RunError
from wirelang.train.runs import RunPlan

__all__ = ["RunError", "TrainOptions", "evaluate_run", "fit", "train"]


@dataclass
class TrainOptions:
    """The command line of `wirelang train`, as data."""

    spec: str | Path | None  # None with `resume`: the run's own spec.wire
    overrides: list[str] = field(default_factory=list)  # `--set key=value`
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    data_root: str | None = None
    download: bool = False
    out: str | Path | None = None
    resume: str | Path | None = None
    gpus: int = 0
    procs: int = 0
    dry_run: bool = False
    threads: int | None = None  # torch threads of a single CPU process (default: usable cores)
    settings: dict[str, Any] = field(default_factory=dict)  # dotted key -> plain value (Python)
    device: str | None = None  # cpu, cuda or cuda:N (default: cpu, or cuda with --gpus)
    data: Any = None  # a wirelang.train.data.GivenData: datasets passed from Python
    progress: Any = None  # a wirelang.train.progress.Progress (tests pass a quiet one)

    def flag_overrides(self) -> dict[str, Any]:
        flags = {
            "epochs": self.epochs,
            "batch": self.batch_size,
            "seed": self.seed,
            "data.root": self.data_root,
        }
        return {k: v for k, v in flags.items() if v is not None}


def train(opts: TrainOptions, say=print):
    """Train a spec (or resume a run); returns a RunResult, or the resolved config for --dry-run.

    Raises SpecError for a broken spec and RunError for everything else a user can cause.
    The steps: check the options, plan the run (a fresh one from the spec and its overrides, or
    the saved plan of the run resumed), refuse what cannot run before anything is written, then
    either launch one process per rank or train here.
    """
    from wirelang.frontend import ClassesFromData, build
    from wirelang.runs.layout import SPEC
    from wirelang.train import distributed

    if opts.spec is None and opts.resume is None:
        raise RunError("give a spec to train, or --resume RUN", 2)
    spec = Path(opts.spec) if opts.spec is not None else Path(opts.resume) / SPEC
    _check_options(opts)
    device = _device(opts)
    try:
        net, auto = build(spec), False
    except ClassesFromData as err:  # `classes auto` over `data folder`: counted below
        net, auto = err.network, True
    job = distributed.env_job()
    if opts.resume is not None:
        plan = _resumed_plan(opts, spec, net, auto, job, device)
    else:
        plan = _fresh_plan(opts, spec, net, auto, job, device)
    _preflight(plan, opts, job)
    if opts.dry_run:
        return plan.to_json() | {
            "run_dir": str(plan.run_dir),
            "batch_per_process": plan.config.batch // plan.world_size,
        }
    _refuse_early(plan, opts, job)
    if job is None and plan.world_size > 1:
        return _launch(plan, opts, spec, say)
    return _train_here(plan, opts, auto, say)


def _check_options(opts: TrainOptions) -> None:
    if opts.threads is not None and opts.threads < 1:
        raise RunError("--threads takes a count >= 1", 2)
    if opts.gpus and opts.procs:
        raise RunError("--gpus and --procs exclude each other (--procs runs CPU processes)", 2)
    if opts.gpus < 0 or opts.procs < 0:
        raise RunError("--gpus and --procs take a count >= 0", 2)


def _resumed_plan(opts: TrainOptions, spec: Path, net, auto: bool, job, device: str) -> RunPlan:
    """The saved plan of the run in `opts.resume`, with only where it runs allowed to change."""
    from wirelang.frontend import build
    from wirelang.runs.layout import SPEC
    from wirelang.train.runs import load_plan, save_plan

    if opts.overrides or opts.settings or {k for k in opts.flag_overrides() if k != "data.root"}:
        raise RunError(
            "--resume continues with the run's saved settings; drop --set, --epochs, "
            "--batch-size and --seed (--data-root may say where the data is now)",
            2,
        )
    if auto:  # the count the run started with, written into its own spec.wire
        from wirelang.runs.layout import check_run_dir

        check_run_dir(Path(opts.resume))
        net = build(spec, classes=build(Path(opts.resume) / SPEC).classes)
    plan = load_plan(spec, Path(opts.resume), net)
    if opts.data_root is not None:  # where the files are is not what the run computes
        plan.config = plan.config.model_copy(
            update={"data": plan.config.data.model_copy(update={"root": str(opts.data_root)})}
        )
        if job is None or _is_launched():
            save_plan(plan)  # launched ranks and later resumes read it from config.json
    if job is not None:
        plan.world_size = job[2]
        if opts.gpus or opts.procs:  # torchrun ... --resume RUN --gpus N: as below
            plan.device = "cuda" if opts.gpus else "cpu"
    elif opts.gpus or opts.procs:  # resuming on another machine: allowed, though not bit-exact
        plan.device, plan.world_size = ("cuda", opts.gpus) if opts.gpus else ("cpu", opts.procs)
    if opts.device is not None:
        plan.device = device
    _resume_given(plan, opts.data)
    return plan


def _fresh_plan(opts: TrainOptions, spec: Path, net, auto: bool, job, device: str) -> RunPlan:
    """A new run's plan: the spec's settings under the overrides, flags and Python datasets."""
    from wirelang.frontend import build
    from wirelang.runs.layout import default_run_dir
    from wirelang.train.runs import merged_config, parse_overrides, resolve_config

    overrides = {**parse_overrides(opts.overrides), **opts.settings, **opts.flag_overrides()}
    if opts.data is not None:  # datasets from Python: nothing to load by name
        overrides["data"] = {"name": "python", "workers": opts.data.workers}
        if opts.batch_size is None and opts.data.batch is not None:
            overrides["batch"] = opts.data.batch
    if auto:  # the settings say where the data is; its class folders say how many
        from wirelang.train.data import auto_classes

        count = (
            opts.data.class_count()  # datasets from Python say it themselves
            if opts.data is not None
            else auto_classes(merged_config(net, overrides))
        )
        net = build(spec, classes=count)
    world = job[2] if job is not None else max(opts.gpus, opts.procs, 1)
    return RunPlan(
        spec_path=spec,
        net=net,
        config=resolve_config(net, overrides),
        overrides=overrides,
        run_dir=Path(opts.out) if opts.out is not None else default_run_dir(spec),
        device=device,
        world_size=world,
        download=opts.download,
        given=opts.data,
    )


def _preflight(plan: RunPlan, opts: TrainOptions, job) -> None:
    """Checks a dry run also makes, and the thread count of a one-process CPU run."""
    from wirelang.runs.layout import default_threads
    from wirelang.train.runs import check_batch

    check_batch(plan.config, plan.world_size)
    if plan.given is not None:  # before the run folder exists: shapes, labels, enough items
        from wirelang.train.data import check_train_size

        plan.given.check(plan.net)
        check_train_size(len(plan.given.train), plan.config)
    if plan.config.tensorboard:
        from wirelang.train.metrics import require_tensorboard

        require_tensorboard()
    if plan.device == "cpu" and plan.world_size == 1 and job is None:
        # One process on the CPU: OMP_NUM_THREADS where set, else as many threads as cores it
        # may use (affinity, cgroup quota), never the machine's whole count when a container or
        # taskset allows fewer.
        plan.threads = opts.threads or default_threads()


def _refuse_early(plan: RunPlan, opts: TrainOptions, job) -> None:
    """Devices, memory and the run folder, checked before anything is allocated or written."""
    from wirelang.runs.layout import check_fresh_dir
    from wirelang.runs.memory import check_memory
    from wirelang.train import distributed

    if plan.device == "cuda":
        distributed.check_gpus(job[1] + 1 if job is not None else plan.world_size)
    elif plan.device.startswith("cuda:"):
        distributed.check_device(plan.device)
    if job is None or not _is_launched():
        # Refuse before allocating, once for every process: one process checks for itself,
        # the --procs launcher for all it starts (they skip it), and each process torchrun
        # starts for those on its machine (LOCAL_WORLD_SIZE), which share its memory.
        from wirelang.train.data import held_bytes

        local = plan.world_size if job is None else _local_world_size(job)
        device = f"cuda:{job[1]}" if job is not None and plan.device == "cuda" else plan.device
        check_memory(
            plan.net,
            plan.config,
            device,
            plan.world_size,
            held_bytes(plan.config, plan.net),
            processes=local,
        )
    if opts.resume is None and (job is None or _is_launched()):
        check_fresh_dir(plan.run_dir)


def _launch(plan: RunPlan, opts: TrainOptions, spec: Path, say):
    """We are the launcher: prepare the directory once, then N workers resume it."""
    from wirelang.train import distributed
    from wirelang.train.runs import prepare_run

    if opts.resume is None:
        prepare_run(plan)
    elif _finished(plan.run_dir, say):
        return _result(plan.run_dir)
    code = distributed.launch(spec, plan.run_dir, plan.world_size, plan.device)
    if code:
        raise RunError(
            # the launcher has said which process failed, and how
            f"training of {plan.run_dir} stopped; continue it with --resume {plan.run_dir}",
            code,
        )
    return _result(plan.run_dir)


def _train_here(plan: RunPlan, opts: TrainOptions, auto: bool, say):
    """Train in this process: alone, or as one rank of a job torchrun or the launcher started."""
    from wirelang.train import distributed
    from wirelang.train.runs import prepare_run

    if auto and opts.resume is None:
        source = (
            "the datasets passed"
            if opts.data is not None
            else "the class folders of the training data"
        )
        say(f"classes auto: {plan.net.classes} ({source})")
    if plan.threads is not None:
        import torch

        torch.set_num_threads(plan.threads)
        say(f"threads: {plan.threads}")
    d = distributed.init(plan.device)
    try:
        if opts.resume is None:
            # Fresh run under torchrun: rank 0 creates the directory and tells the others where.
            error = None
            if d.is_main:
                try:
                    prepare_run(plan)
                except RunError as err:
                    error = err
            if not distributed.all_agree(d, error is None):
                raise error or RunError("rank 0 could not prepare the run directory", quiet=True)
            plan.run_dir = Path(distributed.broadcast_text(d, str(plan.run_dir)))
        from wirelang.data import DataError
        from wirelang.train.loop import run
        from wirelang.train.progress import Progress

        progress = opts.progress or Progress(enabled=d.is_main)
        try:
            result = run(plan, d, progress)
            distributed.settle(d)
            return result
        except DataError as err:  # an unreadable image met mid-epoch: name it, no traceback
            raise RunError(str(err)) from None
        except RuntimeError:
            if not d.is_distributed:
                raise
            # a peer died mid-collective: one line for this rank, not a gloo/NCCL traceback
            raise RunError(f"process {d.rank}: lost contact with the other processes") from None
        finally:
            progress.close()  # a live progress bar must not outlive an error
    finally:
        distributed.teardown(d)


def fit(
    spec_or_model: Any = None,
    train_data: Any = None,
    val_data: Any = None,
    test_data: Any = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    threads: int | None = None,
    verbose: bool = True,
    **settings: Any,
):
    """Train a spec on your own torch datasets; the run folder is the one `wirelang train`
    writes (config.json, spec.wire, metrics.jsonl, metrics.csv, checkpoints/). Returns a
    `RunResult`: `run_dir`, `final` (the last metrics line) and `model` (trained, eval mode).

    `spec_or_model`: a .wire path, or its IR (`wirelang.check(path)`). `train_data`, `val_data`,
    `test_data`: a map-style `Dataset` of (float image tensor (C, H, W), int label), or a
    `DataLoader` of one (its dataset, batch size, workers and collate function are used; the
    order is drawn by wirelang from the seed, so that resuming is exact). Shapes and labels are
    checked against the spec's `input` and `classes` before the run folder is created. Without
    `val_data` the best checkpoint is the last; without `test_data` there are no test figures.

    `**settings`: train settings by name, over the spec's `train` block (`clip_grad=1.0`,
    `ema=0.999`, `accumulate=4`, `optimizer={"lr": 0.05}`, `schedule="cosine"`).

    `resume=RUN` (no spec, no settings) continues a run after a crash or to its end; pass the
    same datasets again. A run trained this way loads with `wirelang.load(RUN)`.

    Raises `wirelang.diagnostics.SpecError` for a broken spec and `RunError` for the rest.
    """
    from wirelang.train.data import GivenData
    from wirelang.train.progress import Progress

    spec = None if spec_or_model is None else _spec_path(spec_or_model)
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        flat.update(_dotted(key, value))
    opts = TrainOptions(
        spec=spec,
        settings=flat,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        out=out,
        resume=resume,
        threads=threads,
        device=device,
        data=GivenData.of(train_data, val_data, test_data),
        progress=Progress(enabled=verbose and int(os.environ.get("RANK", "0")) == 0),
    )
    return train(opts, say=print if verbose else lambda _: None)


def _spec_path(spec_or_model: Any) -> Path:
    """The .wire file of a spec path or of an IR built from one (unchanged since)."""
    from wirelang.frontend import build
    from wirelang.ir import core
    from wirelang.ir.meaning import spec_hash

    if isinstance(spec_or_model, str | Path):
        return Path(spec_or_model)
    if isinstance(spec_or_model, core.Network):
        path = Path(spec_or_model.span.path)
        if not path.is_file() or spec_hash(build(path)) != spec_hash(spec_or_model):
            raise RunError(
                f"this network is not the one {path} describes (changed after it was "
                "checked, or the file moved); train from a .wire file",
                2,
            )
        return path
    raise RunError(
        "wirelang.train takes a .wire path or its IR (wirelang.check(path)), not a "
        f"{type(spec_or_model).__name__}; a model to sparsify is trained with your own loop",
        2,
    )


def _dotted(key: str, value: Any) -> dict[str, Any]:
    """`optimizer={"lr": 0.05}` -> {"optimizer.lr": 0.05}: a group's other settings stay."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for sub, v in value.items():
            out.update(_dotted(f"{key}.{sub}", v))
        return out
    return {key: list(value) if isinstance(value, tuple) else value}


def _device(opts: TrainOptions) -> str:
    """The device flag checked against --gpus / --procs and the machine (a usage error, 2)."""
    from wirelang.train import distributed

    if opts.device is None:
        return "cuda" if opts.gpus else "cpu"
    distributed.check_device(opts.device)
    if opts.gpus and opts.device == "cpu" or opts.procs and opts.device != "cpu":
        raise RunError(
            f"--device {opts.device} contradicts "
            + (f"--gpus {opts.gpus}" if opts.gpus else f"--procs {opts.procs} (CPU processes)"),
            2,
        )
    if opts.gpus > 1 and opts.device != "cuda":
        raise RunError(
            f"--device {opts.device} names one device; --gpus {opts.gpus} uses cuda:0 to "
            f"cuda:{opts.gpus - 1} (write --device cuda, or leave it out)",
            2,
        )
    return opts.device


def _resume_given(plan: RunPlan, given: Any) -> None:
    """A run trained on datasets from Python resumes with the same datasets passed again."""
    from wirelang.runs.layout import read_config

    from_python = plan.config.data.name == "python"
    if given is None:
        return  # a run from Python says what to pass when it looks for its data
    if not from_python:
        raise RunError(
            f"{plan.run_dir} trains on `{plan.config.data.name}`, not on datasets passed from "
            "Python; resume it without train_data",
            2,
        )
    saved = read_config(plan.run_dir).get("python_data") or {}
    now = given.describe()
    for split in ("train", "val", "test"):
        was, new = saved.get(split), now[split]
        if (was and was["items"]) != (new and new["items"]):
            raise RunError(
                f"{plan.run_dir} was trained with {split}_data of "
                f"{was['items'] if was else 'no'} items; this {split}_data has "
                f"{new['items'] if new else 'no'} items (pass the same datasets to resume)",
                2,
            )
    given.check(plan.net)
    plan.given = given


def _local_world_size(job: tuple[int, int, int]) -> int:
    """Processes of a torchrun job on this machine (torchrun sets LOCAL_WORLD_SIZE)."""
    raw = os.environ.get("LOCAL_WORLD_SIZE", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else job[2]


def _is_launched() -> bool:
    from wirelang.runs.layout import LAUNCHED_ENV

    return os.environ.get(LAUNCHED_ENV) == "1"


def _finished(run_dir: Path, say) -> bool:
    from wirelang.runs.checkpoint import restore_best, resume_point

    found = resume_point(run_dir, say=say)
    if found is not None and found[0].get("finished"):
        restore_best(run_dir, found, say)  # a run stopped after its last last.pt, before best.pt
        say(
            f"{run_dir} is finished (phase {found[0]['phase']}, epoch {found[0]['epoch']}); nothing to do"
        )
        return True
    return False


def _result(run_dir: Path):
    from wirelang.train.loop import RunResult, _last_record

    return RunResult(run_dir, _last_record(run_dir))


def evaluate_run(
    run_dir: str | Path,
    split: str = "val",
    checkpoint: str | Path | None = None,
    download: bool = False,
    data_root: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Loss, top-1 and top-5 of a run's model (its best checkpoint) on its val or test split.

    `data_root`: where the run's dataset is now, when it moved since training. `device`: cpu,
    cuda or cuda:N."""
    import torch

    from wirelang.frontend import build
    from wirelang.runs.layout import SPEC, read_config
    from wirelang.runs.load import load_run_model
    from wirelang.train.data import eval_loader, load_splits
    from wirelang.train.distributed import Dist, check_device
    from wirelang.train.metrics import evaluate
    from wirelang.train_config import TrainConfig

    if split not in ("val", "test"):
        raise RunError(f"--split must be val or test, not {split!r}", 2)
    check_device(device)
    where = Dist(device=torch.device("cuda", 0) if device == "cuda" else torch.device(device))
    if where.device.type == "cuda":  # the loader's pinned memory and streams on that device,
        torch.cuda.set_device(where.device)  # not a second context on cuda:0
    run_dir = Path(run_dir)
    saved = read_config(run_dir)
    config = TrainConfig.model_validate(saved["train"])
    if data_root is not None:
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"root": str(data_root)})}
        )
    model = load_run_model(run_dir, checkpoint)
    splits = load_splits(config, build(run_dir / SPEC), download or bool(saved.get("download")))
    data = splits.val if split == "val" else splits.test
    if data is None:
        raise RunError(
            f"{run_dir} has no validation split (data.val is 0)"
            if split == "val"
            else f"{run_dir} has no test split (its data folder has no test/ or val/ folder)"
        )
    model.to(where.device)
    result = evaluate(model, eval_loader(data, config, where), where)
    return {"split": split, "items": len(data), **result, "device": str(where.device)}


class _TrainPackage(types.ModuleType):
    """This package, callable: `wirelang.train(...)` is `fit(...)`."""

    def __call__(self, *args: Any, **kwargs: Any):
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _TrainPackage
