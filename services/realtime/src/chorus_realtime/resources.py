"""Everything one replica holds open while it runs, opened and closed by the lifespan.

:func:`open_resources` builds the parts — one client of the main Redis (commands,
connection counts, the arq queue; ``REDIS_URL`` or a Sentinel group), the client of the
Redis Cluster the channels live on when ``REALTIME_REDIS_CLUSTER`` is set, the event bus
with the configured history and key layout, the hub and its pub/sub connections,
presence, the canary, the registry of this replica's connections, the token verifier (with
the accounts' token versions), the token watch that closes connections whose token expired
or was revoked, the room guard (who may enter a room, and who loses access inside), the
assistant's enqueuer and the per-user quotas — starts them, and stops them in reverse order.
Routes reach them through :mod:`chorus_realtime.deps` (the WebSocket endpoint, plain ASGI,
from ``scope["app"].state.resources``).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from chorus_common.events import EventBus
from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import RedisEndpoint, create_cluster, create_redis
from chorus_common.rooms import OpenRooms, RoomDirectory
from chorus_common.tokens import TokenService, TokenVerifier, TokenVersions
from chorus_realtime.domain.access import RoomGuard
from chorus_realtime.domain.assistant import Assistant
from chorus_realtime.domain.canary import Canary
from chorus_realtime.domain.hub import Hub
from chorus_realtime.domain.presence import Presence
from chorus_realtime.domain.quotas import Quotas, QuotaSettings
from chorus_realtime.domain.registry import Registry
from chorus_realtime.domain.token_watch import TokenWatch
from chorus_realtime.settings import RealtimeSettings
from chorus_realtime.transport.topology import ClusterTopology, SingleTopology, Topology

__all__ = ["Resources", "open_resources", "replica_name"]

logger = logging.getLogger("chorus.realtime")


def replica_name(instance_id: str) -> str:
    """``INSTANCE_ID`` plus a per-boot suffix: a restarted pod is a new replica."""
    return f"{instance_id.replace('|', '_')}.{os.urandom(3).hex()}"


@dataclass
class Resources:
    """The replica's parts."""

    redis: Redis
    #: The cluster's client when the channels live on one (else None: ``redis``).
    cluster: RedisCluster | None
    bus: EventBus
    hub: Hub
    presence: Presence
    canary: Canary
    registry: Registry
    tokens: TokenVerifier
    token_watch: TokenWatch
    guard: RoomGuard
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
        """Start the hub, presence heartbeats, the canary, the token watch and room re-checks."""
        self.hub.on_access = self.guard.on_access_event
        await self.hub.start()
        await self.presence.start()
        await self.canary.start()
        self.token_watch.start()
        self.guard.start()

    async def stop(self) -> None:
        """Stop in reverse order, letting background cleanups finish briefly first."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=2.0)
        await self.guard.stop()
        await self.token_watch.stop()
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


@asynccontextmanager
async def open_resources(settings: RealtimeSettings) -> AsyncIterator[Resources]:
    """Build and start the replica's parts (none needs Redis up yet); stop them on exit."""
    replica = replica_name(settings.instance_id)
    endpoint = RedisEndpoint.from_settings(settings)
    redis = create_redis(
        endpoint,
        client_name=f"chorus-realtime:{replica}",
        max_connections=settings.redis_max_connections,
    )
    seeds = settings.cluster_seeds
    cluster = (
        None
        if seeds is None
        else create_cluster(
            seeds,
            client_name=f"chorus-realtime:{replica}",
            max_connections=settings.redis_max_connections,
        )
    )
    bus = EventBus.from_settings(redis if cluster is None else cluster, settings)
    pubsub_name = f"chorus-realtime-pubsub:{replica}"
    topology: Topology = (
        SingleTopology(endpoint, client_name=pubsub_name)
        if seeds is None
        else ClusterTopology(seeds, client_name=pubsub_name)
    )
    hub = Hub(topology=topology, bus=bus, client_name=pubsub_name, replay_limit=settings.replay_max)
    registry = Registry()
    versions = TokenVersions(redis, cache_seconds=settings.token_version_cache_seconds)
    resources = Resources(
        redis=redis,
        cluster=cluster,
        bus=bus,
        hub=hub,
        presence=Presence(redis, bus, replica=replica, ttl=settings.presence_ttl),
        canary=Canary(
            hub=hub,
            bus=bus,
            instance=replica,
            interval=settings.canary_interval,
            timeout=settings.canary_timeout,
        ),
        registry=registry,
        tokens=TokenVerifier(
            TokenService(secret=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer),
            versions,
        ),
        token_watch=TokenWatch(registry, versions, interval=settings.token_version_cache_seconds),
        guard=RoomGuard(
            RoomDirectory(redis) if settings.private_rooms else OpenRooms(),
            hub,
            registry,
            interval=settings.room_access_recheck_seconds,
        ),
        assistant=Assistant(
            ArqRedis(
                redis.connection_pool, default_queue_name=settings.arq_queue_name, **JOB_CODEC
            ),
            mention=settings.assistant_mention,
            queue_name=settings.arq_queue_name,
            max_pending=settings.assistant_max_pending_per_user,
        ),
        quotas=Quotas(
            redis,
            QuotaSettings(
                bytes_per_second=settings.user_bytes_per_second,
                bytes_burst=settings.user_bytes_burst,
                new_rooms_per_minute=settings.user_new_rooms_per_minute,
            ),
            bus=bus,
        ),
    )
    await resources.start()
    try:
        yield resources
    finally:
        await resources.stop()
        await redis.aclose()
        if cluster is not None:
            await cluster.aclose()
