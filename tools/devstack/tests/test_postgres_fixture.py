"""The Postgres fixtures keep working while other pytest sessions start on the machine."""

from __future__ import annotations

import asyncpg
import pytest

from chorus_devstack.servers import RunningPostgres


async def test_postgres_outlives_another_pytest_session_starting(
    private_postgres: RunningPostgres, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # A pytest session starting anywhere on the machine makes /tmp/pytest-of-<user> 0700
    # again. The server (an unprivileged user, when we are root) must not depend on it.
    pytest_root = tmp_path_factory.getbasetemp().parent
    mode = pytest_root.stat().st_mode & 0o777
    pytest_root.chmod(0o700)
    try:
        dsn = private_postgres.server.dsn
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CHECKPOINT")  # writes pg_control: a PANIC if cut off
        finally:
            await conn.close()
        private_postgres.stop()
        private_postgres.start()  # a clean shutdown, and back
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
    finally:
        pytest_root.chmod(mode)
