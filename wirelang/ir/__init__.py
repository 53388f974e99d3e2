"""The resolved IR: what the passes produce from the syntax tree and the backend consumes."""
