"""Text to syntax tree: the grammar lives in `grammars/wire.lark`; this package only uses it."""
