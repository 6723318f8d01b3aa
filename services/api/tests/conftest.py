"""Fixtures for the api tests: a migrated database, Redis, and the api over real HTTP.

The api runs in-process behind a real uvicorn socket (``serve_app``), against the
session's Postgres (in a database of this package's own) and a Redis server of this
package's own — the arq queue and the login counters are global keys, so sharing a Redis
with other packages' tests would let their workers or limits interfere.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import create_redis
from chorus_devstack.servers import RunningPostgres, RunningRedis
from chorus_devstack.testing import base_url, serve_app
from chorus_schema.migrate import upgrade

from .support import Account, make_settings, new_account


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    """This package's own Redis server (overrides the shared one)."""
    server = RunningRedis(tmp_path_factory.mktemp("api-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_server: RunningPostgres) -> str:
    """A database of the api tests' own, migrated to head."""
    url = postgres_server.create_database(f"api_{os.urandom(4).hex()}")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Direct database access, to write rows as the worker would and to check state."""
    engine = create_async_engine(database_url)
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_server: RunningRedis) -> ApiSettings:
    """The api's settings for the session."""
    return make_settings(database_url=database_url, redis_url=redis_server.url)


@pytest.fixture(scope="session")
async def api_url(settings: ApiSettings) -> AsyncIterator[str]:
    """Base URL of the api, served for the whole session."""
    async with serve_app(create_app(settings)) as server:
        yield base_url(server)


@pytest.fixture(scope="session")
async def client(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the api."""
    async with httpx.AsyncClient(base_url=api_url, trust_env=False, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
async def arq(redis_server: RunningRedis) -> AsyncIterator[ArqRedis]:
    """A client of the api's Redis, with arq's helpers, to inspect queues and streams."""
    redis = create_redis(redis_server.url, client_name="api-tests")
    client = ArqRedis(pool_or_conn=redis.connection_pool, **JOB_CODEC)
    yield client
    await client.aclose()
    await redis.aclose()


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    """A fresh user, logged in."""
    return await new_account(client)
