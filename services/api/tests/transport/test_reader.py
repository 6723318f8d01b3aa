"""The Reader: Core statements compiled once, run on its own pool's connections, given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import JSON, Enum, Numeric, bindparam, cast, select
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from chorus_api.settings import ApiSettings
from chorus_api.transport.pool import PoolGate
from chorus_api.transport.reader import CompiledQuery, Reader, close_read_pool, create_read_pool
from chorus_schema.models import User

_BY_ID = select(User.id, User.email).where(User.id == bindparam("user_id"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=2, max_overflow=0)
    yield engine
    await engine.dispose()


@pytest.fixture
async def read_pool(engine: AsyncEngine, settings: ApiSettings) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_read_pool(engine, settings, size=2)
    yield pool
    await close_read_pool(pool, grace=5)


@pytest.fixture
def reader(read_pool: asyncpg.Pool, engine: AsyncEngine) -> Reader:
    return Reader(read_pool, PoolGate(slots=2, timeout=0.2), engine.dialect)


def _checked_out(pool: asyncpg.Pool) -> int:
    return pool.get_size() - pool.get_idle_size()


async def test_the_pool_connects_on_demand_with_the_engines_settings(
    read_pool: asyncpg.Pool, reader: Reader
) -> None:
    assert read_pool.get_size() == 0  # nothing opened at startup
    async with reader.connection() as connection:
        settings = await connection.fetchrow(
            "SELECT current_setting('application_name') AS app,"
            " current_setting('statement_timeout') AS timeout"
        )
    assert settings is not None
    assert (settings["app"], settings["timeout"]) == ("api", "15s")
    assert (read_pool.get_size(), _checked_out(read_pool)) == (1, 0)


async def test_fetch_runs_the_statement_and_returns_the_connection(
    engine: AsyncEngine, read_pool: asyncpg.Pool, reader: Reader
) -> None:
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
    assert _checked_out(read_pool) == 0


async def test_a_failing_statement_closes_its_connection(
    read_pool: asyncpg.Pool, reader: Reader
) -> None:
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
    assert _checked_out(read_pool) == 0
    async with reader.connection() as connection:
        assert connection.get_server_pid() != first_pid  # closed, not reused half-used


async def test_a_full_pool_answers_the_pool_timeout(
    read_pool: asyncpg.Pool, reader: Reader
) -> None:
    async with reader.connection(), reader.connection():
        with pytest.raises(PoolTimeoutError):  # the api's 503 with Retry-After
            async with reader.connection():
                pass
    assert _checked_out(read_pool) == 0


async def test_a_cancelled_read_gives_its_connection_back(
    read_pool: asyncpg.Pool, reader: Reader
) -> None:
    started = asyncio.Event()

    async def slow_read() -> None:
        async with reader.connection() as connection:
            started.set()
            await connection.fetch("SELECT pg_sleep(30)")

    task = asyncio.create_task(slow_read())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _checked_out(read_pool) == 0
    rows = await reader.fetch(_BY_ID, user_id=-1)  # the pool still serves
    assert rows == []


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
