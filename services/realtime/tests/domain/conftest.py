"""Fixtures of the domain tests: an EventBus and a started Hub on the session's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chorus_common.events import EventBus
from chorus_common.redis_client import create_redis
from chorus_realtime.domain.hub import Hub


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[EventBus]:
    """An EventBus on its own Redis client."""
    redis = create_redis(redis_url, client_name="domain-tests")
    yield EventBus(redis, history_size=1000, history_ttl=86_400)
    await redis.aclose()


@pytest.fixture
async def hub(redis_url: str, bus: EventBus) -> AsyncIterator[Hub]:
    """A started hub (its pub/sub connection comes up in the background)."""
    hub = Hub(redis_url=redis_url, bus=bus, client_name="domain-test")
    await hub.start()
    yield hub
    await hub.stop()
