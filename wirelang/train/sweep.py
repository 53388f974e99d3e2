"""`wirelang sweep`: one run per seed, and a mean +- std table the way the paper reports results.

    wirelang sweep specs/quickstart.wire --seeds 3 --out runs/quickstart-sweep

The sweep directory (default `runs/<spec>-sweep`) holds one run per seed (`seed0/`, `seed1/`,
...) and `sweep.md` / `sweep.json`. Running the same command again resumes unfinished runs and
skips finished ones; a seed folder started with other settings (spec, `--set`, `--epochs`, ...)
is refused rather than mixed into the table. A seed whose run fails does not stop the others:
the table is written for the seeds that finished, and the sweep then reports the failures.
"""

from __future__ import annotations

import json
import statistics
import warnings
from pathlib import Path
from typing import Any

from wirelang.runs.layout import RunError, write_text_atomic

REPORTED = ("test_top1", "val_top1", "best_val_top1")


def parse_seeds(count: int | None, listed: str | None) -> list[int]:
    if (count is None) == (listed is None):
        raise RunError("give either --seeds N or --seed-list 1,2,3", 2)
    if count is not None:
        if count < 1:
            raise RunError("--seeds needs a count >= 1", 2)
        return list(range(count))
    try:
        seeds = [int(s) for s in listed.split(",") if s.strip()]
    except ValueError:
        raise RunError(f"--seed-list {listed}: expected comma-separated integers", 2) from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise RunError(f"--seed-list {listed}: expected distinct integers >= 0", 2)
    return seeds


def run_sweep(
    spec: str | Path,
    seeds: list[int],
    overrides: list[str] | None = None,
    out: str | Path | None = None,
    say=print,
    **flags: Any,
) -> dict[str, Any]:
    """Train `spec` once per seed (extra `flags` go to TrainOptions); write and return the summary."""
    from wirelang.train import TrainOptions, train

    spec = Path(spec)
    out = Path(out) if out is not None else Path("runs") / f"{spec.stem}-sweep"
    runs: dict[int, dict[str, Any]] = {}
    failed: dict[int, str] = {}
    for seed in seeds:
        run_dir = out / f"seed{seed}"
        say(f"sweep: seed {seed} -> {run_dir}")
        fresh = TrainOptions(
            spec=spec, overrides=list(overrides or []), seed=seed, out=run_dir, **flags
        )
        if (run_dir / "config.json").exists():
            _same_settings(fresh, run_dir)
            opts = TrainOptions(
                spec=spec, resume=run_dir, procs=flags.get("procs", 0), gpus=flags.get("gpus", 0)
            )
        else:
            opts = fresh
        try:
            runs[seed] = train(opts, say=say).final
        except RunError as err:
            if err.exit_code != 1:  # 2: a bad setting fails every seed alike; 130: interrupted
                raise
            failed[seed] = str(err)
            say(f"sweep: seed {seed} failed: {err}")
    summary = summarize(spec, runs, failed)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(
        out / "sweep.json",
        json.dumps({k: v for k, v in summary.items() if k != "table"}, indent=2) + "\n",
    )
    write_text_atomic(out / "sweep.md", summary["table"] + "\n")
    if failed:
        say(summary["table"])
        raise RunError(
            f"{len(failed)} of {len(seeds)} seeds failed ({', '.join(map(str, failed))}); "
            f"the table in {out / 'sweep.md'} holds the others"
        )
    return summary


def _same_settings(fresh: Any, run_dir: Path) -> None:
    """Refuse to resume a seed folder whose saved settings differ from the ones asked for now."""
    from dataclasses import replace

    from wirelang.diagnostics import SpecWarning
    from wirelang.train import train
    from wirelang.train_config import SettingError, validate

    with warnings.catch_warnings():  # the run itself says the spec's warnings
        warnings.simplefilter("ignore", SpecWarning)
        wanted = train(replace(fresh, dry_run=True), say=lambda *_: None)
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    changed = [key for key in ("spec_hash",) if wanted.get(key) != saved.get(key)]
    # through the settings model: a run saved by an older wirelang lacks newer settings' defaults
    try:
        saved_train = validate(saved.get("train", {})).model_dump(mode="json")
    except SettingError as err:
        raise RunError(
            f"{run_dir / 'config.json'}: {err.message}; give this seed another --out"
        ) from None
    want_train = wanted.get("train", {})
    changed += [
        f"{key}"
        for key in sorted(set(want_train) | set(saved_train))
        if want_train.get(key) != saved_train.get(key)
    ]
    if changed:
        raise RunError(
            f"{run_dir} was started with other settings ({', '.join(changed)} differ); "
            "give the same spec and options to resume it, or another --out",
            2,
        )


def summarize(
    spec: Path, runs: dict[int, dict[str, Any]], failed: dict[int, str] | None = None
) -> dict[str, Any]:
    """Mean and sample standard deviation (n - 1) of each reported accuracy, in percent."""
    stats: dict[str, Any] = {}
    for key in REPORTED:
        values = [100 * r[key] for r in runs.values() if r.get(key) is not None]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            stats[key] = {
                "mean": statistics.fmean(values),
                "std": std,
                "n": len(values),
                "values": values,
            }
    header = "| spec | seeds | " + " | ".join(f"{k} (%)" for k in stats) + " |"
    rule = "|---|---|" + "---|" * len(stats)
    cells = " | ".join(
        f"{s['mean']:.2f} +- {s['std']:.2f}" if s["n"] > 1 else f"{s['mean']:.2f} (1 seed)"
        for s in stats.values()
    )
    table = "\n".join([header, rule, f"| {spec.stem} | {', '.join(map(str, runs))} | {cells} |"])
    per_seed = ["", "| seed | " + " | ".join(stats) + " |", "|---|" + "---|" * len(stats)]
    for seed, r in runs.items():
        per_seed.append(f"| {seed} | " + " | ".join(_pct(r.get(k)) for k in stats) + " |")
    for seed, why in (failed or {}).items():
        per_seed.append(f"| {seed} | " + " | ".join("failed" for _ in stats) + f" |  {why}")
    return {
        "spec": str(spec),
        "seeds": list(runs),
        "stats": stats,
        "runs": {str(s): r for s, r in runs.items()},
        "failed": {str(s): why for s, why in (failed or {}).items()},
        "table": table + "\n" + "\n".join(per_seed),
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"
