"""Write the layer table of docs/LANGUAGE.md from the op registry (`wirelang.ops`).

    python scripts/gen_ops_table.py          # rewrite the table between its markers
    python scripts/gen_ops_table.py --check  # exit 1 if the table is out of date

The table sits between `<!-- ops-table:begin -->` and `<!-- ops-table:end -->`;
tests/test_language_doc.py checks that it is current.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "LANGUAGE.md"
BEGIN, END = "<!-- ops-table:begin -->", "<!-- ops-table:end -->"


def _param(p) -> str:
    if p.required:
        return f"`{p.name}` (required)"
    if p.default is None:
        return f"`{p.name}` (optional)"
    default = str(p.default).lower() if isinstance(p.default, bool) else p.default
    return f"`{p.name}={default}`"


def ops_table() -> str:
    from wirelang.ops import get_op, list_ops

    rows = [
        "| layer | positional | parameters | node operator | sparse | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for name in list_ops():
        op = get_op(name)
        params = ", ".join(_param(p) for p in op.params) or "none"
        positional = ", ".join(f"`{p}`" for p in op.positional) or "none"
        rows.append(
            f"| `{name}` | {positional} | {params} | {'yes' if op.per_channel else 'no'} | "
            f"{'yes' if op.weighted else 'no'} | {op.doc} |"
        )
    return "\n".join(rows)


def with_table(doc: str) -> str:
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[:start] + "\n" + ops_table() + "\n" + doc[end:]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    doc = DOC.read_text(encoding="utf-8")
    new = with_table(doc)
    if "--check" in sys.argv[1:]:
        if new != doc:
            print(
                f"{DOC.relative_to(ROOT)}: the layer table is out of date; run python scripts/gen_ops_table.py"
            )
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
