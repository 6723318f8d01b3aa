"""Session-less reads: Core statements compiled once, run on the pooled asyncpg connection.

A hot read-only route that needs neither the ORM's identity map nor its unit of work pays
a lot for them on asyncpg: an ``AsyncSession`` and every statement it runs cross into a
new greenlet (``greenlet_spawn``), build an execution context, process the result and
hydrate instances. ``bench/api_users.py`` measured ~1.5 ms of CPU per request for the
session, ``selectinload`` and ``from_attributes`` validation of ``GET /api/users/{id}``,
against ~0.1 ms for the same rows through :class:`Reader`.

What a :class:`Reader` keeps: statements are SQLAlchemy Core built from the shared models
(a renamed column breaks at import, not in production), compiled once for the engine's
dialect; connections come from the same pool (its size, recycling, the free liveness check
at checkout and the pool metrics all apply) through the same :class:`PoolGate` (first
come, first served); asyncpg's own statement cache prepares each statement once per
connection; a database outage is still a 503 (``chorus_api.unavailable`` maps asyncpg's
errors as well as SQLAlchemy's).

What it gives up, and why that is safe here: SQLAlchemy's result and bind processing —
:class:`CompiledQuery` refuses a statement whose columns or parameters would need it
(only integers, strings, booleans, dates and timestamps pass), so
rows come out exactly as asyncpg decodes them; execution events (none are used on reads);
and the pool-wide invalidation SQLAlchemy does on a disconnect error — a connection that
fails while checked out here is invalidated, and the others are checked at their next
checkout (``chorus_api.pool``). Writes and every route that uses the ORM keep sessions.
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
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import sqltypes
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import greenlet_spawn

from chorus_api.pool import PoolGate

__all__ = ["AnySelect", "CompiledQuery", "Reader"]

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


class Reader:
    """Runs :class:`CompiledQuery` statements on pooled asyncpg connections."""

    def __init__(self, engine: AsyncEngine, gate: PoolGate) -> None:
        self._engine = engine
        self._gate = gate
        self._compiled: dict[int, tuple[AnySelect, CompiledQuery]] = {}

    def compiled(self, statement: AnySelect) -> CompiledQuery:
        """``statement`` compiled for this engine, once (keep statements module-level)."""
        entry = self._compiled.get(id(statement))
        if entry is None or entry[0] is not statement:
            entry = (statement, CompiledQuery(statement, self._engine.dialect))
            self._compiled[id(statement)] = entry
        return entry[1]

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection's asyncpg connection, returned to the pool on exit.

        Admission goes through the :class:`PoolGate`; a connection that raised while out
        is invalidated (closed) rather than handed to the next request half-used.
        """
        async with self._gate.slot():
            proxied: PoolProxiedConnection = await self._engine.raw_connection()
            # Both ways back to the pool may close the connection, which awaits: they run
            # in a greenlet like every SQLAlchemy asyncio call, shielded so a cancelled
            # request still returns its connection.
            try:
                yield proxied.driver_connection
            except BaseException:
                await asyncio.shield(greenlet_spawn(proxied.invalidate))
                raise
            await asyncio.shield(greenlet_spawn(proxied.close))

    async def fetch(self, statement: AnySelect, **values: Any) -> Sequence[asyncpg.Record]:
        """Every row ``statement`` returns for ``values``, in one round trip."""
        query = self.compiled(statement)
        async with self.connection() as connection:
            rows: list[asyncpg.Record] = await connection.fetch(query.sql, *query.arguments(values))
        return rows
