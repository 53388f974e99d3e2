"""The memory estimate (`wirelang.memory`) against the real peak of training steps.

    OMP_NUM_THREADS=1 python benchmarks/memory_estimate.py [--out benchmarks/results/memory.md]

For each (spec, batch) below, a fresh process builds the spec, compiles it, makes the
optimizer its train block names and runs STEPS training steps on random inputs; its peak
resident memory (`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is the real figure. A process
that only imports torch and wirelang gives the runtime's own peak. The table shows both, the
estimate, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = 2
CASES = [
    ("specs/quickstart.wire", 128),
    ("specs/cifar_tiny.wire", 64),
    ("specs/cifar_tiny.wire", 256),
    ("specs/fmnist_tiny_discrete.wire", 16),
    ("specs/fmnist_tiny_discrete.wire", 64),
    ("specs/fmnist_tiny_continuous.wire", 32),
    ("specs/mbv1_cifar_dnw.wire", 64),
    ("specs/resnet50_sparse_all10.wire", 4),
    ("specs/resnet50_sparse_all10.wire", 12),
]

CHILD = """
import json, resource, sys
import torch
from wirelang.frontend import build
from wirelang.backend.api import compile_network
from wirelang.train_config import validate
spec, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if spec != "-":
    net = build(spec)
    cfg = validate(dict(net.train)).optimizer
    model = compile_network(net).train()
    if cfg.name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    x = torch.randn(batch, net.input.channels, net.input.height, net.input.width)
    y = torch.randint(0, net.classes, (batch,))
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
print(json.dumps({"max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def peak(spec: str, batch: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, spec, str(batch), str(STEPS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["max_rss"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory.md")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from wirelang import memory
    from wirelang.frontend import build
    from wirelang.passes.limits import format_bytes
    from wirelang.train_config import validate

    runtime = peak("-", 1)
    rows = [
        "| spec | batch | estimate | of which activations | measured peak (max RSS) | estimate / measured |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    measured: dict[str, list[tuple[int, int, int]]] = {}
    for spec, batch in CASES:
        net = build(ROOT / spec)
        cfg = validate(dict(net.train)).optimizer
        est = memory.estimate(net, batch, cfg.name, cfg.momentum)
        real = peak(spec, batch)
        measured.setdefault(spec, []).append((batch, est.total, real))
        rows.append(
            f"| `{spec}` | {batch} | {format_bytes(est.total)} | {format_bytes(est.activations)} | "
            f"{format_bytes(real)} | {est.total / real:.2f} |"
        )
        print(rows[-1], flush=True)
    # Per item of the batch: the difference between two batches of the same spec, which leaves
    # out everything the batch does not change (runtime, weights, optimizer state).
    slopes = [
        "| spec | batches | estimate per item | measured per item | estimate / measured |",
        "|---|---|---:|---:|---:|",
    ]
    for spec, points in measured.items():
        if len(points) < 2:
            continue
        (b0, e0, r0), (b1, e1, r1) = points[0], points[-1]
        est_item, real_item = (e1 - e0) / (b1 - b0), (r1 - r0) / (b1 - b0)
        slopes.append(
            f"| `{spec}` | {b0}, {b1} | {format_bytes(round(est_item))} | "
            f"{format_bytes(round(real_item))} | {est_item / real_item:.2f} |"
        )
    text = "\n".join(
        [
            "# Memory: the estimate against the measured peak",
            "",
            "`OMP_NUM_THREADS=1 python benchmarks/memory_estimate.py`: each row a fresh process that "
            f"builds the spec, compiles it and runs {STEPS} training steps (its train block's "
            "optimizer) on random inputs of the batch shown; the measured figure is its peak "
            "resident memory (`getrusage` max RSS). The estimate is `wirelang.memory.estimate`, "
            "which `wirelang train` and `wirelang.load` compare with the memory available. "
            f"A process that only imports torch and wirelang peaks at {format_bytes(runtime)} "
            f"(the estimate counts {format_bytes(memory.RUNTIME_BYTES)} for it).",
            "",
            *rows,
            "",
            "Per item of the batch (the difference between two batches of one spec):",
            "",
            *slopes,
            "",
        ]
    )
    print(text)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
