"""After training: read a run, inspect its wiring, draw it, and export it.

    inspect.py     edges per set, degrees, dead nodes, effective parameters and multiply-adds
    draw.py        a picture of a spec's candidate pattern or a run's learned wiring
    frozen.py      the learned network as a self-contained `.wire` (`wiring fixed { ... }`)
    compact.py     dead nodes removed, masks folded, each block of edges gathered or dense by
                   its density: a plain nn.Module -> pt2 / ONNX / edges JSON
    standalone.py  that module as PyTorch source (Jinja2 templates) plus its weights
    fold.py        masks folded into plain weights, for any module (`wirelang.export`)
    programs.py    writing, checking and measuring the artifacts (`wirelang export`)

Everything reads a run through `wirelang.runs.load.load_run`, which picks the same checkpoint
as `wirelang.load(RUN)` (best, else last) unless another is named.
"""
