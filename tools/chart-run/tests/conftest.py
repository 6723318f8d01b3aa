"""chart-run's own tests: the objects they build live next to them (chartrun_manifests)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers sit next to the tests (pytest runs in importlib mode; this is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def runs_dir() -> Iterator[Path]:
    """Where this session's chart-runs keep their state, removed at the end.

    Not under pytest's basetemp: another pytest run on the machine prunes old basetemps,
    which would pull the data directories from under a running release.
    """
    directory = Path(tempfile.mkdtemp(prefix="chart-run-tests-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)
