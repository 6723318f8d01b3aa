"""Cheap pool hygiene: drop dead connections at checkout, and reads without BEGIN/ROLLBACK.

Two round-trip savers, measured by ``bench/api_users.py`` (they took the api from 0.15x
to the figure in the README against raw asyncpg):

- **Liveness at checkout for free.** SQLAlchemy's ``pool_pre_ping`` on asyncpg runs
  ``BEGIN; ;  ROLLBACK`` — three round trips on every checkout. But when Postgres restarts
  or fails over it closes our sockets, and asyncpg notices that on its own
  (``is_closed()``), so a checkout listener can discard those connections without asking
  the server. Connections that die silently (a NAT forgetting them) still fail their
  first query: SQLAlchemy then invalidates the whole pool and the client gets a 503 with
  ``Retry-After``. ``DB_POOL_PRE_PING=true`` restores the full ping where that matters
  (pgbouncer, lossy networks); the api's default is off.
- **Reads in autocommit.** A read-only request gains nothing from a transaction under
  READ COMMITTED (each statement takes its own snapshot either way), yet a session would
  pay a ``BEGIN`` and a ``ROLLBACK``. Read routes use sessions whose connections run in
  autocommit (same pool); writes keep their transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["discard_closed_connections", "read_sessionmaker"]


def discard_closed_connections(engine: AsyncEngine) -> None:
    """Make the pool replace connections the server has closed, before handing them out."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and driver.is_closed():
            # The documented way to say "stale, get another one" (the pool retries).
            raise DisconnectionError


def read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for read-only requests: autocommit connections from the same pool."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"),
        expire_on_commit=False,
        autoflush=False,
    )
