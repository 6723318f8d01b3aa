"""chart-run's own tests: the objects they build live next to them (chartrun_manifests)."""

from __future__ import annotations

import sys
from pathlib import Path

# The helpers sit next to the tests (pytest runs in importlib mode; this is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
