"""A trainer that dies (os._exit: no cleanup, as SIGKILL leaves it) just before or just after
the n-th write that lands an epoch's files: a metrics.jsonl line, or a rename into
checkpoints/ (last.pt to prev.pt; a finished temporary to last.pt, best.pt or phase1_last.pt;
the manifest after each of them). Exit 3: the run ended with fewer writes than n.

`killed_run` runs in a process forked from a server that has already imported torch and
wirelang's trainer (`SERVER_PRELOAD`), so that each of the dozens of killed runs of
tests/test_run_files.py starts in milliseconds instead of importing them again. The server
must start with `SERVER_ENV` in its environment: MKL reads its thread count when torch is
imported, and a run with another count sums in another order (its weights then differ from
the reference run's in the last bits).
"""

from __future__ import annotations

import os
import sys

SERVER_PRELOAD = ["kill_driver", "torch", "wirelang.train", "wirelang.train.loop"]
SERVER_ENV = {"OMP_NUM_THREADS": "1", "CI": "1"}


def killed_run(spec: str, out: str, n: int, when: str, log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from wirelang.runs import layout

    count = 0

    def point(do, counts=lambda *args: True):
        def wrapped(*args, **kwargs):
            nonlocal count
            if not counts(*args):
                return do(*args, **kwargs)
            count += 1
            if count == n and when == "before":
                os._exit(9)
            out = do(*args, **kwargs)
            if count == n and when == "after":
                os._exit(9)
            return out

        return wrapped

    os.replace = point(os.replace, lambda src, dst: "checkpoints" in str(dst))
    layout.MetricsLog.append = point(layout.MetricsLog.append)
    from wirelang.train import TrainOptions, train

    train(TrainOptions(spec=spec, out=out))
    sys.exit(3)
