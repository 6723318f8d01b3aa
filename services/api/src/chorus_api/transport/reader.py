"""Session-less reads: Core statements compiled once, run on a pool of plain asyncpg connections.

A hot read-only route that needs neither the ORM's identity map nor its unit of work pays
a lot for them on asyncpg: an ``AsyncSession`` and every statement it runs cross into a
new greenlet (``greenlet_spawn``), build an execution context, process the result and
hydrate instances. ``bench/api_users.py`` measured ~1.5 ms of CPU per request for the
session, ``selectinload`` and ``from_attributes`` validation of ``GET /api/users/{id}``,
against ~0.1 ms for the same rows through :class:`Reader`.

**Its own pool.** Even checking a connection out of SQLAlchemy's pool and back costs two
greenlet switches and a shielded task: ~55 us of CPU per request more than asyncpg's own
pool (``bench/api_users.py``: 300 to 245 us per request, 0.46x to 0.58x the raw asyncpg
peer). So the Reader runs on an ``asyncpg`` pool of ``DB_READ_POOL_SIZE`` connections,
opened on demand (the api still starts while Postgres is down) with the engine's
connection arguments (the same URL, connect timeout, ``application_name`` and
``statement_timeout``), admitted first come, first served by its own :class:`PoolGate`
(a 503 past ``DB_POOL_TIMEOUT``), not reset on release (a Reader runs single statements,
outside any transaction, and leaves no session state), and counted by
``chorus_api_db_read_pool_in_use``. asyncpg replaces a connection the server closed at its
next checkout; a connection that fails while checked out is closed rather than handed to
the next request half-used; a database outage is still a 503 (``chorus_api.routes.unavailable``
maps asyncpg's errors as well as SQLAlchemy's).

What a :class:`Reader` keeps: statements are SQLAlchemy Core built from the shared models
(a renamed column breaks at import, not in production), compiled once for the engine's
dialect; asyncpg's statement cache prepares each statement once per connection.

What it gives up, and why that is safe here: SQLAlchemy's result and bind processing —
:class:`CompiledQuery` refuses a statement whose columns or parameters would need it
(only integers, strings, booleans, dates and timestamps pass), so rows come out exactly as
asyncpg decodes them; and execution events (none are used on reads). Writes and every
route that uses the ORM keep sessions on the engine's pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine

from chorus_api.transport.pool import PoolGate
from chorus_common.database import connect_args
from chorus_common.settings import PostgresSettings

__all__ = ["AnySelect", "CompiledQuery", "Reader", "close_read_pool", "create_read_pool"]

#: What SQLAlchemy's asyncpg adapter accepts in the URL's query but asyncpg does not.
_ADAPTER_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback")

#: A Core ``SELECT`` of any columns.
AnySelect = Select[*tuple[Any, ...]]


#: Types whose values asyncpg encodes and decodes exactly as SQLAlchemy would hand them
#: over: no bind or result processor on the asyncpg dialect. Anything else (``Enum``,
#: ``Numeric``, ``JSON``, ``Interval``, untyped parameters...) is refused.
_PLAIN_TYPES = (
    sqltypes.Integer,
    sqltypes.String,
    sqltypes.Boolean,
    sqltypes.DateTime,
    sqltypes.Date,
)


def _is_plain(type_: TypeEngine[Any]) -> bool:
    return isinstance(type_, _PLAIN_TYPES) and not isinstance(type_, sqltypes.Enum)


class CompiledQuery:
    """A Core ``SELECT`` compiled once: its SQL (``$n`` placeholders) and parameter order."""

    def __init__(self, statement: AnySelect, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        for column in statement.selected_columns:
            if not _is_plain(column.type):
                msg = f"column {column} ({column.type}) needs SQLAlchemy's result processing"
                raise TypeError(msg)
        for name, bind in compiled.binds.items():
            if not _is_plain(bind.type):
                msg = f"parameter {name} ({bind.type}) needs SQLAlchemy's bind processing"
                raise TypeError(msg)
        if compiled.positiontup is None:  # pragma: no cover - asyncpg's style is positional
            msg = "the dialect does not use positional parameters"
            raise TypeError(msg)
        self.sql = str(compiled)
        self.parameters: tuple[str, ...] = tuple(compiled.positiontup)

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``values`` (every parameter must be given)."""
        return [values[name] for name in self.parameters]


async def _leave_as_is(connection: asyncpg.Connection) -> None:
    """Release without a reset: a Reader leaves no transaction, listener or setting behind."""


async def create_read_pool(
    engine: AsyncEngine, settings: PostgresSettings, *, size: int
) -> asyncpg.Pool:
    """An asyncpg pool of up to ``size`` connections to the engine's database, made on demand.

    The connection arguments are the engine's: its URL as SQLAlchemy's dialect reads it
    (host, port, credentials, ``ssl``...) and :func:`chorus_common.database.connect_args`.
    """
    _, url_args = engine.dialect.create_connect_args(engine.url)
    arguments = {k: v for k, v in url_args.items() if k not in _ADAPTER_ONLY}
    pool = await asyncpg.create_pool(
        min_size=0,
        max_size=size,
        reset=_leave_as_is,
        **arguments,
        **connect_args(settings),
    )
    assert pool is not None
    return pool


async def close_read_pool(pool: asyncpg.Pool, *, grace: float) -> None:
    """Close ``pool``, waiting ``grace`` seconds for connections still checked out."""
    try:
        async with asyncio.timeout(grace):
            await pool.close()
    except TimeoutError:
        pool.terminate()


class Reader:
    """Runs :class:`CompiledQuery` statements on a pool of asyncpg connections."""

    def __init__(self, pool: asyncpg.Pool, gate: PoolGate, dialect: Dialect) -> None:
        self._pool = pool
        self._gate = gate
        self._dialect = dialect
        self._compiled: dict[int, tuple[AnySelect, CompiledQuery]] = {}

    def compiled(self, statement: AnySelect) -> CompiledQuery:
        """``statement`` compiled for the engine's dialect, once (keep statements module-level)."""
        entry = self._compiled.get(id(statement))
        if entry is None or entry[0] is not statement:
            entry = (statement, CompiledQuery(statement, self._dialect))
            self._compiled[id(statement)] = entry
        return entry[1]

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled asyncpg connection, returned to the pool on exit.

        Admission goes through the :class:`PoolGate`; a connection that raised while out
        is closed (the pool opens a new one when needed) rather than handed to the next
        request half-used. asyncpg shields the release, so a cancelled request still
        returns its connection.
        """
        async with self._gate.slot():
            connection: asyncpg.Connection = await self._pool.acquire()
            try:
                yield connection
            except BaseException:
                connection.terminate()
                raise
            finally:
                await self._pool.release(connection)

    async def fetch(self, statement: AnySelect, **values: Any) -> Sequence[asyncpg.Record]:
        """Every row ``statement`` returns for ``values``, in one round trip."""
        query = self.compiled(statement)
        async with self.connection() as connection:
            rows: list[asyncpg.Record] = await connection.fetch(query.sql, *query.arguments(values))
        return rows
