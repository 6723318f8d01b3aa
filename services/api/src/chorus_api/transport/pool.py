"""Pool hygiene: fair waiting, dead connections dropped for free, reads without BEGIN.

**Fair waiting.** SQLAlchemy's async pool waits on an ``asyncio.Queue``; a connection
returned while requests wait can be taken by a request that just arrived (the woken waiter
finds the queue empty and queues again at the back). Under sustained overload a few
requests starve until ``DB_POOL_TIMEOUT`` and fail with 503 while the mean latency stays
at tens of milliseconds — ``bench/api_users.py`` at 32 and 64 connections showed exactly
that. :class:`PoolGate` admits requests to the pool first-come first-served (an
``asyncio.Semaphore``, FIFO since Python 3.11.1) with as many slots as the pool has
connections, so nobody waits inside the pool; waiting past ``DB_POOL_TIMEOUT`` is still a
503. A request holds one slot for its one session (never two: that could deadlock).

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

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = [
    "PoolGate",
    "SessionFactory",
    "admitted_sessions",
    "discard_closed_connections",
    "read_sessionmaker",
]

#: Opens a session admitted through the pool gate, when the work needs one — for routes
#: that do slow work first (argon2) and must not hold a connection meanwhile.
SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class PoolGate:
    """First-come first-served admission to a pool of ``slots`` connections."""

    def __init__(self, *, slots: int, timeout: float) -> None:
        self._semaphore = asyncio.Semaphore(slots)
        self.timeout = timeout

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one connection's worth of the pool; SQLAlchemy's TimeoutError when full."""
        if self._semaphore.locked():  # full, or others waiting (FIFO): wait, bounded
            try:
                async with asyncio.timeout(self.timeout):
                    await self._semaphore.acquire()
            except TimeoutError:
                msg = f"no database connection free within {self.timeout}s"
                raise PoolTimeoutError(msg) from None
        else:  # a free slot and nobody ahead: taken at once, no timer to arm and cancel
            await self._semaphore.acquire()
        try:
            yield
        finally:
            self._semaphore.release()


def admitted_sessions(gate: PoolGate, sessions: async_sessionmaker[AsyncSession]) -> SessionFactory:
    """A :data:`SessionFactory`: a slot of ``gate``, then a session of ``sessions``."""

    @asynccontextmanager
    async def open_session() -> AsyncIterator[AsyncSession]:
        async with gate.slot(), sessions() as session:
            yield session

    return open_session


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
