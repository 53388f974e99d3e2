"""IR -> torch: masks, modules, fx lowering, the reference evaluator and artifacts."""
