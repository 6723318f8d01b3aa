"""Fixtures: real Redis, realtime replicas as real processes, tokens and clients."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from chorus_common.events import EventBus
from chorus_common.redis_client import create_redis
from chorus_common.rooms import LOADED_KEY
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.servers import RunningRedis

SECRET = "a-realtime-test-secret-long-enough-for-hs256"

#: Fast self-checks so fault tests finish quickly.
FAST_ENV = {
    "CANARY_INTERVAL": "0.5",
    "CANARY_TIMEOUT": "1.0",
    "PRESENCE_TTL": "3",
    "WS_PING_INTERVAL": "5",
    "DRAIN_SECONDS": "2",
    "GRACEFUL_TIMEOUT": "2",
}


def rooms_loaded(redis_url: str) -> None:
    """Say the room access lists are in this Redis, as the api does once it copied them
    (until then, realtime lets nobody into any room)."""
    client = sync_redis.Redis.from_url(redis_url)
    try:
        client.set(LOADED_KEY, "1")
    finally:
        client.close()


@dataclass
class Replica:
    """One ``python -m chorus_realtime`` process."""

    name: str
    redis_url: str
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        spec = ProcessSpec(
            name=self.name,
            argv=[sys.executable, "-m", "chorus_realtime"],
            env={
                "ENV": "test",
                "JWT_SECRET": SECRET,
                "REDIS_URL": self.redis_url,
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "INSTANCE_ID": self.name,
                "LOG_FORMAT": "console",
                "PYTHONUNBUFFERED": "1",
                **FAST_ENV,
                **self.env,
            },
            ready_url=f"http://127.0.0.1:{self.port}/readyz",
            ready_timeout=30,
            stop_timeout=10,
        )
        self.process = ManagedProcess(spec, self.log_dir)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        """Start and wait until ready."""
        rooms_loaded(self.redis_url)
        self.process.start()
        self.process.wait_ready()
        return self

    def kill(self) -> None:
        """SIGKILL: a crash."""
        self.process.kill()

    def terminate(self) -> None:
        """SIGTERM: the start of a rolling update (returns at once)."""
        self.process.signal(signal.SIGTERM)

    def stop(self) -> None:
        """Stop for good."""
        self.process.stop()

    def logs(self) -> str:
        """The log tail (for failure messages)."""
        return self.process.tail(80)


ReplicaFactory = Callable[..., Replica]


@pytest.fixture(scope="session")
def redis_url(redis_server: RunningRedis) -> str:
    """The session's Redis."""
    return redis_server.url


@pytest.fixture(scope="session")
def tokens() -> TokenService:
    """Issues tokens the replicas accept."""
    return TokenService(secret=SECRET, issuer="chorus")


@pytest.fixture
def room() -> str:
    """A fresh room name per test."""
    return f"room-{os.urandom(4).hex()}"


@pytest.fixture
def user_id() -> Callable[[], str]:
    """Fresh numeric user ids."""
    counter = iter(range(10**6))
    base = int.from_bytes(os.urandom(3), "big") * 1000

    def next_id() -> str:
        return str(base + next(counter))

    return next_id


@pytest.fixture
def make_replica(tmp_path: Path) -> Iterator[ReplicaFactory]:
    """Start replicas for this test (stopped at its end)."""
    started: list[Replica] = []

    def make(redis_url: str, name: str | None = None, **env: str) -> Replica:
        replica = Replica(name or f"rt-{len(started) + 1}", redis_url, tmp_path / "logs", env)
        started.append(replica)
        return replica.start()

    yield make
    for replica in started:
        replica.stop()


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for module-scoped replicas."""
    return tmp_path_factory.mktemp("replicas")


@pytest.fixture(scope="module")
def pair(redis_server: RunningRedis, module_tmp: Path) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas shared by a module's tests that do not hurt them."""
    one = Replica("pair-1", redis_server.url, module_tmp / "logs").start()
    two = Replica("pair-2", redis_server.url, module_tmp / "logs").start()
    yield one, two
    one.stop()
    two.stop()


#: The limits of the ``limited`` replica: small enough for a test to push past each one.
LIMITS_ENV = {
    "REPLAY_MAX": "5",
    "MAX_CHANNELS_PER_CONNECTION": "2",
    "MAX_CONNECTIONS_PER_USER": "2",
}


@pytest.fixture(scope="session")
def limited(
    redis_server: RunningRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    """One replica with tight limits (``LIMITS_ENV``), shared by the tests that push on them."""
    logs = tmp_path_factory.mktemp("limited") / "logs"
    replica = Replica("limited", redis_server.url, logs, dict(LIMITS_ENV)).start()
    yield replica
    replica.stop()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client of the session's Redis."""
    client = create_redis(redis_url, client_name="realtime-tests", socket_timeout=None)
    yield client
    await client.aclose()


@pytest.fixture
def bus(redis: Redis) -> EventBus:
    """An EventBus on that client: publishes and reads history as the services do."""
    return EventBus(redis, history_size=1000, history_ttl=86_400)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
        yield client
