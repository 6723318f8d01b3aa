"""Fixtures: two mock upstreams, a Redis of the gateway's own, and gateway replicas.

The gateway runs in-process behind real uvicorn sockets (``serve_app``); the mock
upstreams run on their own threads and loops (``MockServer``), so a gateway stuck on an
upstream cannot stall the mock, and the mock's timestamps are honest. Replicas are
separate apps — separate pools, breakers and limiters — sharing one Redis, as pods do.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from openai import AsyncOpenAI

from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis
from chorus_mock_openai import MockConfig
from chorus_mock_openai.testing import MockServer

from .support import JWT_SECRET, UsageJobs, provider, running_gateway, settings_for


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockServer]:
    """The primary mock provider."""
    with MockServer(MockConfig()) as server:
        yield server


@pytest.fixture(scope="session")
def backup() -> Iterator[MockServer]:
    """A second mock provider, for fallback."""
    with MockServer(MockConfig()) as server:
        yield server


@pytest.fixture(scope="session")
def gateway_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    """A Redis of the gateway tests' own (flushed per test; no other suite's jobs in it)."""
    server = RunningRedis(tmp_path_factory.mktemp("gateway-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_sync(gateway_redis: RunningRedis) -> Iterator[redis.Redis]:
    """A plain client on the gateway's Redis."""
    client = redis.Redis.from_url(gateway_redis.url)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _fresh(upstream: MockServer, backup: MockServer, redis_sync: redis.Redis) -> None:
    """Every test starts with default mocks, no faults, empty logs and an empty Redis."""
    upstream.reset()
    backup.reset()
    redis_sync.flushdb()


@pytest.fixture(scope="session")
def providers(upstream: MockServer, backup: MockServer) -> dict[str, Any]:
    """Primary first, backup as the fallback, the alias the worker uses."""
    return {
        "providers": [provider("primary", upstream), provider("backup", backup, priority=1)],
        "aliases": {"assistant": "mock-gpt"},
    }


@pytest.fixture(scope="session")
async def replicas(
    gateway_redis: RunningRedis, providers: dict[str, Any]
) -> AsyncIterator[tuple[str, str]]:
    """Two gateway replicas with generous limits, shared by the tests that need no others."""
    settings = settings_for(gateway_redis.url, providers)
    async with running_gateway(settings) as one, running_gateway(settings) as two:
        yield one, two


@pytest.fixture
def gateway_url(replicas: tuple[str, str]) -> str:
    """The first replica."""
    return replicas[0]


@pytest.fixture
def tokens() -> TokenService:
    """Issues user access tokens the gateway accepts."""
    return TokenService(secret=JWT_SECRET, issuer="chorus")


@pytest.fixture
def user_id() -> int:
    """A user of this test only, so its limits and usage are its own."""
    return secrets.randbelow(10**9) + 1


@pytest.fixture
def auth(tokens: TokenService, user_id: int) -> dict[str, str]:
    """Headers authenticating as this test's user."""
    return {"authorization": f"Bearer {tokens.issue(user_id)}"}


@pytest.fixture
async def client(
    gateway_url: str, tokens: TokenService, user_id: int
) -> AsyncIterator[AsyncOpenAI]:
    """The official SDK pointed at the gateway as this test's user, retries off."""
    sdk = AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=tokens.issue(user_id), max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


@pytest.fixture
async def direct(upstream: MockServer) -> AsyncIterator[AsyncOpenAI]:
    """The SDK pointed straight at the primary mock."""
    sdk = AsyncOpenAI(base_url=upstream.api_base, api_key="sk-direct", max_retries=0)
    try:
        yield sdk
    finally:
        await sdk.close()


@pytest.fixture
def usage_jobs(redis_sync: redis.Redis, user_id: int) -> UsageJobs:
    """The usage jobs of this test's user."""
    return UsageJobs(redis_sync, subject=f"user:{user_id}")
