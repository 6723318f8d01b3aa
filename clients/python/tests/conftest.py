"""The client against what it ships against: a real realtime replica on a real Redis.

The replica is ``python -m chorus_realtime``, started once per session on the session's
Redis (the ``chorus_devstack`` pytest plugin), and restarted by the tests that need a
disconnect; tokens are signed with its secret, as the api's are.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from chorus_common.events import EventBus
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.servers import RunningRedis

SECRET = "a-client-test-secret-long-enough-for-hs256"


class Replica:
    """One realtime process on a fixed port, so a restart keeps its address."""

    def __init__(self, redis_url: str, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        spec = ProcessSpec(
            name=f"realtime-{self.port}",
            argv=[sys.executable, "-m", "chorus_realtime"],
            env={
                "ENV": "test",
                "JWT_SECRET": SECRET,
                "REDIS_URL": redis_url,
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
                "INSTANCE_ID": f"client-tests-{self.port}",
                "LOG_FORMAT": "console",
                "PYTHONUNBUFFERED": "1",
                "DRAIN_SECONDS": "1",
                "GRACEFUL_TIMEOUT": "1",
            },
            ready_url=f"{self.url}/readyz",
            ready_timeout=30,
            stop_timeout=10,
        )
        self.process = ManagedProcess(spec, log_dir)

    def start(self) -> None:
        """Start and wait until ready."""
        self.process.start()
        self.process.wait_ready()

    def kill(self) -> None:
        """A crash: the connections just drop."""
        self.process.kill()

    def stop(self) -> None:
        """A clean stop."""
        self.process.stop()


@pytest.fixture(scope="session")
def replica(
    redis_server: RunningRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replica]:
    """The session's realtime replica."""
    server = Replica(redis_server.url, tmp_path_factory.mktemp("client-logs"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tokens() -> TokenService:
    """Issues tokens the replica accepts, as the api does."""
    return TokenService(secret=SECRET, issuer="chorus")


@pytest.fixture
def room() -> str:
    """A fresh room per test."""
    return f"client-{os.urandom(4).hex()}"


@pytest.fixture
async def bus(redis_server: RunningRedis) -> AsyncIterator[EventBus]:
    """Publishes events as the api and the worker do."""
    redis = Redis.from_url(redis_server.url)
    yield EventBus(redis, history_size=1000, history_ttl=3600)
    await redis.aclose()
