"""Everything one replica runs, built once by the lifespan and reached by the routes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from chorus_common.events import EventBus
from chorus_common.tokens import TokenService
from chorus_realtime.domain.assistant import Assistant
from chorus_realtime.domain.canary import Canary
from chorus_realtime.domain.hub import Hub
from chorus_realtime.domain.presence import Presence
from chorus_realtime.domain.quotas import Quotas
from chorus_realtime.domain.registry import Registry

__all__ = ["Realtime", "replica_name"]

logger = logging.getLogger("chorus.realtime")


def replica_name(instance_id: str) -> str:
    """``INSTANCE_ID`` plus a per-boot suffix: a restarted pod is a new replica."""
    return f"{instance_id.replace('|', '_')}.{os.urandom(3).hex()}"


@dataclass
class Realtime:
    """The replica's parts."""

    redis: Redis
    bus: EventBus
    hub: Hub
    presence: Presence
    canary: Canary
    registry: Registry
    tokens: TokenService
    assistant: Assistant | None
    quotas: Quotas | None = None
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run ``coro`` in the background (cleanup that must outlive a cancelled request)."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s failed: %s", task.get_name(), task.exception())

    async def start(self) -> None:
        """Start the hub, presence heartbeats and the canary."""
        await self.hub.start()
        await self.presence.start()
        await self.canary.start()

    async def stop(self) -> None:
        """Stop in reverse order, letting background cleanups finish briefly first."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=2.0)
        await self.canary.stop()
        await self.presence.stop()
        await self.hub.stop()

    async def ready(self) -> None:
        """Readiness: the pub/sub connection is up and the last canary came back."""
        if not self.hub.connected:
            msg = "pub/sub connection down"
            raise RuntimeError(msg)
        if not self.canary.healthy:
            msg = "canary did not come back"
            raise RuntimeError(msg)
