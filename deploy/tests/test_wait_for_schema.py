"""The init container's wait-for-schema script, against a real Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deploycheck.chart import CHART

from chorus_devstack.servers import RunningPostgres
from chorus_schema.migrate import upgrade

SCRIPT = CHART / "files" / "wait-for-schema.py"


def _wait(url: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--timeout", str(timeout), "--interval", "0.2"],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_waits_for_the_schema_then_passes(postgres_server: RunningPostgres) -> None:
    url = postgres_server.create_database("wait_for_schema")
    before = _wait(url, timeout=1)
    assert before.returncode == 1
    assert "no revision" in before.stderr
    upgrade(url)
    after = _wait(url, timeout=5)
    assert after.returncode == 0, after.stderr
    assert "schema is at head" in after.stdout


def test_an_unreachable_database_times_out(tmp_path: Path) -> None:
    result = _wait("postgresql://chorus:chorus@127.0.0.1:1/chorus", timeout=1)
    assert result.returncode == 1
    assert "database not reachable" in result.stderr
