"""docs/LANGUAGE.md stays in step with the registries, and its complete examples check."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from wirelang import methods, train_config
from wirelang.frontend import check_file
from wirelang.ops import list_ops

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "LANGUAGE.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"^```wire\n(.*?)^```", DOC, flags=re.S | re.M)


def mentioned(word: str) -> bool:
    """Named in code type: `word`, `word(...)`, `word { ... }`."""
    return re.search(rf"`{re.escape(word)}\b", DOC) is not None


@pytest.mark.parametrize("name", list_ops())
def test_every_op_is_documented(name: str) -> None:
    assert mentioned(name)


@pytest.mark.parametrize(
    "name",
    [
        *methods.list_wirings(),
        *methods.list_semantics(),
        *methods.list_inits(),
        *methods.ODE_SOLVERS,
    ],
)
def test_every_method_and_solver_is_documented(name: str) -> None:
    assert mentioned(name)


@pytest.mark.parametrize("name", [*train_config.TrainConfig.model_fields, *train_config.DATASETS])
def test_every_train_setting_and_dataset_is_documented(name: str) -> None:
    assert mentioned(name)


def test_ops_table_is_current() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_ops_table", ROOT / "scripts" / "gen_ops_table.py"
    )
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    assert gen.with_table(DOC) == DOC, "run python scripts/gen_ops_table.py"


def test_examples_check(tmp_path: Path) -> None:
    assert len(EXAMPLES) >= 2
    for i, text in enumerate(EXAMPLES):
        spec = tmp_path / f"example{i}.wire"
        spec.write_text(text, encoding="utf-8")
        assert check_file(spec) == [], text
