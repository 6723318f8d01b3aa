"""The Reader: Core statements compiled once, run on the pool's connections, given back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import JSON, Enum, Numeric, bindparam, cast, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import QueuePool

from chorus_api.pool import PoolGate
from chorus_api.reader import CompiledQuery, Reader
from chorus_schema.models import User

_BY_ID = select(User.id, User.email).where(User.id == bindparam("user_id"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=2, max_overflow=0)
    yield engine
    await engine.dispose()


def _checked_out(engine: AsyncEngine) -> int:
    pool = engine.sync_engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedout()


async def test_fetch_runs_the_statement_and_returns_the_connection(engine: AsyncEngine) -> None:
    reader = Reader(engine, PoolGate(slots=2, timeout=5))
    async with engine.begin() as connection:
        user_id = (
            await connection.execute(
                User.__table__.insert()
                .values(email="reader@example.com", full_name="R", password_hash="x")
                .returning(User.id)
            )
        ).scalar_one()
    rows = await reader.fetch(_BY_ID, user_id=user_id)
    assert [(row["id"], row["email"]) for row in rows] == [(user_id, "reader@example.com")]
    assert await reader.fetch(_BY_ID, user_id=-1) == []
    assert reader.compiled(_BY_ID) is reader.compiled(_BY_ID)  # compiled once
    assert _checked_out(engine) == 0


async def test_a_failing_statement_invalidates_its_connection(engine: AsyncEngine) -> None:
    reader = Reader(engine, PoolGate(slots=2, timeout=5))
    async with reader.connection() as connection:
        first_pid = connection.get_server_pid()
    pids = []

    async def failing_read() -> None:
        async with reader.connection() as connection:
            pids.append(connection.get_server_pid())
            await connection.fetch("SELECT $1::int", "not an int")

    with pytest.raises(asyncpg.DataError):
        await failing_read()
    assert pids == [first_pid]  # the pool gave the same connection back
    assert _checked_out(engine) == 0
    async with reader.connection() as connection:
        assert connection.get_server_pid() != first_pid  # closed, not reused half-used


def test_statements_needing_sqlalchemy_processing_are_refused(engine: AsyncEngine) -> None:
    for refused in (JSON(), Numeric(asdecimal=False), Enum("a", "b", name="ab")):
        with pytest.raises(TypeError, match="result processing"):
            CompiledQuery(select(cast(User.email, refused)), engine.dialect)
    with pytest.raises(TypeError, match="bind processing"):
        CompiledQuery(
            select(User.id).where(User.email == bindparam("e", type_=JSON())), engine.dialect
        )
    with pytest.raises(TypeError, match="bind processing"):  # untyped: nobody knows
        CompiledQuery(select(User.id).where(bindparam("anything") == 1), engine.dialect)
    query = CompiledQuery(_BY_ID, engine.dialect)
    assert query.parameters == ("user_id",)
    assert "$1" in query.sql
    assert query.arguments({"user_id": 5}) == [5]
