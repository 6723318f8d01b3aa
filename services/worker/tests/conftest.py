"""Fixtures for the worker's tests: a migrated database, a Redis database of our own, the sink.

Every test starts from empty tables, an empty Redis database (number 9 on the session's
server, so other packages' tests are untouched) and an SMTP sink that accepts everything.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chorus_common.database import create_sessionmaker
from chorus_common.events import EventBus
from chorus_devstack.servers import (
    RunningMockOpenAI,
    RunningPostgres,
    RunningRedis,
    RunningSmtpSink,
)
from chorus_schema.migrate import upgrade
from chorus_worker.transport.queue import create_queue_redis

from .harness import Harness, make_settings

TABLES = (
    "users, orders, notifications, room_messages, analytics_events, analytics_daily, "
    "failed_jobs, llm_usage_events, llm_usage_daily"
)


@pytest.fixture(scope="session")
def database_url(postgres_server: RunningPostgres) -> str:
    """A database with the schema, shared by the worker's tests."""
    url = postgres_server.create_database("worker_tests")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_url(redis_server: RunningRedis) -> Iterator[str]:
    """Database 9 of the session's Redis: ours to flush.

    Workers turn on keyspace events server-wide; the flags are put back afterwards so
    other packages' tests see the server as they left it.
    """
    client = redis.Redis.from_url(redis_server.url)
    flags = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
    yield redis_server.url.rsplit("/", 1)[0] + "/9"
    client.config_set("notify-keyspace-events", flags)
    client.close()


@pytest.fixture
def smtp(smtp_sink: RunningSmtpSink) -> Iterator[RunningSmtpSink]:
    """The SMTP sink, accepting and empty."""
    smtp_sink.release()
    smtp_sink.set_mode("accept")
    smtp_sink.clear()
    yield smtp_sink
    smtp_sink.release()
    smtp_sink.set_mode("accept")


@pytest.fixture
async def harness(
    database_url: str,
    redis_url: str,
    smtp_sink: RunningSmtpSink,
    mock_openai: RunningMockOpenAI,
) -> AsyncIterator[Harness]:
    """Clean tables and Redis, and the clients a test needs to act like the other services."""
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    settings = make_settings(
        database_url=database_url,
        redis_url=redis_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp_sink.smtp_port,
        llm_gateway_url=mock_openai.url,
    )
    queue = create_queue_redis(settings)
    await queue.flushdb()
    try:
        yield Harness(
            settings=settings,
            queue=queue,
            sessions=create_sessionmaker(engine),
            bus=EventBus(queue, history_size=1000, history_ttl=86_400),
        )
    finally:
        await queue.aclose()
        await engine.dispose()
