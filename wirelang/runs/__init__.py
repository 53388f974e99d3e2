"""The run directory: the one owner of its layout, its files and how they are read and written.

    runs/<spec>-<YYYYmmdd-HHMMSS>/
      spec.wire       the spec with its includes inlined: the run is rebuilt from this alone
      config.json     the resolved train settings, the command-line overrides, device, world
                      size, wirelang and language versions, the spec hash
      metrics.jsonl   one JSON object per epoch (see wirelang.train.metrics)
      checkpoints/    last.pt, prev.pt, best.pt, and phase1_last.pt for two-phase wirings;
                      manifest.json: which of them is last and best (epoch, step, spec hash,
                      checksum of each), rewritten after every checkpoint

`layout` (torch-free): names, `RunError`, config and metrics readers, atomic text writes.
`checkpoint`: checkpoint files, written atomically with a checksum and read with
`weights_only=True`. `load`: a run (or a spec) as a model, for `eval`, `inspect`, `export`
and `wirelang.load`. The trainer and the after-training commands both go through these.
"""
