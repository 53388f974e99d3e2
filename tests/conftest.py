"""Shared pytest options and fixtures."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="Rewrite golden files (error messages, generated artifacts) instead of comparing.",
    )


def pytest_configure(config: pytest.Config) -> None:
    # One switch for every golden test: the flag also sets the environment variable that
    # tests reading WIRELANG_UPDATE_GOLDENS look at.
    if config.getoption("--update-goldens"):
        os.environ["WIRELANG_UPDATE_GOLDENS"] = "1"


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    """True when goldens should be rewritten: `--update-goldens` or WIRELANG_UPDATE_GOLDENS=1."""
    return (
        bool(request.config.getoption("--update-goldens"))
        or os.environ.get("WIRELANG_UPDATE_GOLDENS") == "1"
    )
