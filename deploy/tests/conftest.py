"""Fixtures of `make helm-check`: rendered scenarios, and the checks' own package on the path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The checks live in deploycheck/ next to the tests (pytest runs in importlib mode).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploycheck.chart import SCENARIOS, Rendered, load_scenario, render


@pytest.fixture(scope="session")
def scenarios() -> dict[str, Rendered]:
    """Every ci/ scenario rendered once (as `helm install` renders it)."""
    return {name: render(load_scenario(name)) for name in SCENARIOS}


@pytest.fixture(scope="session")
def default(scenarios: dict[str, Rendered]) -> Rendered:
    """The default install."""
    return scenarios["default"]


@pytest.fixture(scope="session")
def production(scenarios: dict[str, Rendered]) -> Rendered:
    """The production scenario."""
    return scenarios["production"]
