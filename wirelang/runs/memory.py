"""Refuse, before anything is allocated, a network this machine cannot hold: the one check
`wirelang train` and `wirelang.load` make (the estimate itself is `wirelang.memory`'s).

torch is imported only to ask a GPU for its free memory.
"""

from __future__ import annotations

import dataclasses
import sys

from wirelang import memory
from wirelang.ir import core
from wirelang.runs.layout import RunError
from wirelang.train_config import TrainConfig


def check_memory(
    net: core.Network,
    config: TrainConfig | None = None,
    device: str = "cpu",
    world_size: int = 1,
    data_bytes: int = 0,
    processes: int | None = None,
) -> None:
    """RunError (exit 2) when training with `config` (or, without one, loading the model) needs
    more memory than is available. The batch is split over `world_size` processes; on the CPU,
    the `processes` of them on this machine (default: all) each need their own memory, the
    dataset's `data_bytes` included."""
    processes = world_size if processes is None else processes
    if config is None:
        need, what = memory.estimate(net, batch=1, training=False), "loading"
        batch = 0
    else:
        opt = config.optimizer
        need = memory.estimate(
            net, config.batch // world_size, opt.name, opt.momentum, ema=config.ema > 0
        )
        batch = config.batch // world_size
        what = f"training with batch {batch}"
    need = dataclasses.replace(need, data=data_bytes)
    if "torch" in sys.modules:  # the runtime is loaded: the memory available says so already
        need = dataclasses.replace(need, runtime=0)
    available, source = memory.available_bytes()
    if device.startswith("cuda") and source != memory.AVAILABLE_ENV:
        import torch

        available, source = torch.cuda.mem_get_info(torch.device(device))[0], "free on the GPU"
        # the Python process and the dataset live on the host
        need = dataclasses.replace(need, runtime=0, data=0)
    elif processes > 1:
        need = memory.Estimate(*(n * processes for n in dataclasses.astuple(need)))
        what = f"training in {processes} processes with batch {batch} each"
    problem = memory.refusal(net, need, available, source, what)
    if problem is not None:
        raise RunError(problem, 2)
