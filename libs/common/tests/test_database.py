"""The engine and session factory against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from chorus_common.database import DatabaseCheck, create_engine, create_sessionmaker
from chorus_common.settings import PostgresSettings
from chorus_devstack.servers import RunningPostgres


def _settings(url: str, secret: str, **extra: object) -> PostgresSettings:
    return PostgresSettings(env="test", jwt_secret=secret, database_url=url, **extra)  # type: ignore[arg-type]


async def test_engine_applies_pool_and_statement_timeout(
    postgres_server: RunningPostgres, secret: str
) -> None:
    settings = _settings(
        postgres_server.url,
        secret,
        db_pool_size=3,
        db_statement_timeout_ms=1234,
        service_name="svc",
    )
    engine = create_engine(settings)
    try:
        sessions = create_sessionmaker(engine)
        async with sessions() as session:
            assert (await session.execute(text("SHOW statement_timeout"))).scalar() == "1234ms"
            name = (await session.execute(text("SHOW application_name"))).scalar()
            assert name == "svc"
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        await DatabaseCheck(engine)()
    finally:
        await engine.dispose()


async def test_statement_timeout_cancels_runaway_queries(
    postgres_server: RunningPostgres, secret: str
) -> None:
    engine = create_engine(_settings(postgres_server.url, secret, db_statement_timeout_ms=100))
    try:
        async with engine.connect() as conn:
            with pytest.raises(Exception, match="statement timeout"):
                await conn.execute(text("SELECT pg_sleep(5)"))
    finally:
        await engine.dispose()


async def test_check_fails_while_postgres_is_down_and_recovers(
    private_postgres: RunningPostgres, secret: str
) -> None:
    engine = create_engine(_settings(private_postgres.url, secret, db_connect_timeout=1))
    check = DatabaseCheck(engine)
    try:
        await check()
        await asyncio.to_thread(private_postgres.stop)
        with pytest.raises(Exception):  # noqa: B017, PT011 - any driver error means "down"
            await check()
        await asyncio.to_thread(private_postgres.start)
        # pre-ping replaces the pooled connection the restart killed: no error, no restart.
        await check()
    finally:
        await engine.dispose()
