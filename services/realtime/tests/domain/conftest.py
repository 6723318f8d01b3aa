"""Fixtures of the domain tests: an EventBus and a started Hub on the session's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chorus_common.events import EventBus
from chorus_common.redis_client import RedisEndpoint, create_redis
from chorus_realtime.domain.hub import Hub
from chorus_realtime.transport.topology import SingleTopology


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[EventBus]:
    """An EventBus on its own Redis client."""
    redis = create_redis(redis_url, client_name="domain-tests")
    yield EventBus(redis, history_size=1000, history_ttl=86_400)
    await redis.aclose()


@pytest.fixture
async def hub(redis_url: str, bus: EventBus) -> AsyncIterator[Hub]:
    """A started hub (its pub/sub connection comes up in the background)."""
    topology = SingleTopology(RedisEndpoint(url=redis_url), client_name="domain-test")
    hub = Hub(topology=topology, bus=bus, client_name="domain-test")
    await hub.start()
    yield hub
    await hub.stop()
