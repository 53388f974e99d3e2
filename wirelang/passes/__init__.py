"""The compiler's passes, in order. `wirelang.frontend.build` runs them as one list."""
