"""Waking the job loop when a job is enqueued, instead of polling for it every few ms.

arq enqueues with ``ZADD arq:queue``, and its worker polls that sorted set every
``poll_delay`` (0.5 s by default: ~250 ms of waiting per job on average). Enqueuers here
are plain arq, so they cannot nudge us — but Redis can: with keyspace notifications for
sorted sets on (``notify-keyspace-events`` containing ``K`` and ``z``), every ``ZADD`` on
the queue is published on ``__keyspace@<db>__:<queue>``. The worker subscribes there and
polls the moment a job arrives: enqueue→start is then a couple of milliseconds, and an idle
worker polls only twice a second.

The notifications are a hint, never the source of truth: they are fire-and-forget, so the
loop keeps polling (slowly while they flow, every ``POLL_DELAY`` while they do not) and
polls once after every (re)subscription. :class:`QueueWakeup` turns the flags on itself
when allowed (``CONFIG SET``, adding to what is there), and treats the notifications as
flowing only when ``CONFIG GET`` shows them on or one has been seen; it checks the flags
again every minute, since a restarted Redis forgets a ``CONFIG SET``. Behind Sentinels the
listener reconnects to whichever server is primary, and turns the flags on there too (a
replica promoted by a failover has only its own configuration).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, ResponseError

from chorus_common.redis_client import RedisEndpoint, create_redis
from chorus_worker.metrics import QUEUE_WAKEUPS_ACTIVE

__all__ = ["QueueWakeup", "keyspace_channel"]

logger = logging.getLogger("chorus.worker.wakeup")

#: The queue events that can make a job due sooner: a new job, a retry rescheduled.
_WAKING_EVENTS: Final = frozenset({b"zadd", b"zincr"})
_RECHECK_SECONDS: Final = 60.0
_CHECK_TIMEOUT: Final = 5.0
_MAX_BACKOFF: Final = 5.0
#: A subscription that lasted this long was healthy: the next failure starts a new backoff.
_STABLE_SECONDS: Final = 10.0


def keyspace_channel(db: int, key: str) -> str:
    """The channel Redis publishes ``key``'s keyspace events on."""
    return f"__keyspace@{db}__:{key}"


def _flags_cover_zsets(flags: str) -> bool:
    # K: keyspace channel; z: sorted-set commands (A is the alias for every class).
    return "K" in flags and ("z" in flags or "A" in flags)


class QueueWakeup:
    """Calls ``wake`` whenever a job may have become due; knows whether that is reliable."""

    def __init__(
        self,
        endpoint: RedisEndpoint,
        *,
        queue: str,
        db: int,
        wake: Callable[[], None],
        enable_events: bool,
    ) -> None:
        self.endpoint = endpoint
        self.channel = keyspace_channel(db, queue)
        self.wake = wake
        self.enable_events = enable_events
        self.active = False
        self._told_unavailable = False

    def _set_active(self, active: bool) -> None:
        self.active = active
        QUEUE_WAKEUPS_ACTIVE.set(1 if active else 0)

    async def _events_on(self, client: Redis) -> bool | None:
        """True/False from the server's flags; None when CONFIG is not allowed."""
        try:
            reply = await client.config_get("notify-keyspace-events")
            flags = next(iter(reply.values()), "") if reply else ""
            if isinstance(flags, bytes):
                flags = flags.decode()
            if _flags_cover_zsets(flags):
                return True
            if not self.enable_events:
                return False
            # Add to whatever is configured; never remove what others rely on.
            new = "".join(dict.fromkeys(flags + "Kz"))
            await client.config_set("notify-keyspace-events", new)
            logger.info("enabled Redis keyspace events for the job queue (%r)", new)
        except ResponseError:
            return None
        return True

    async def _listen(self, client: Redis) -> None:
        state = await self._events_on(client)
        self._set_active(state is True)
        if not self.active and not self._told_unavailable:
            self._told_unavailable = True
            logger.info(
                "Redis keyspace events are %s: polling the queue every POLL_DELAY",
                "off" if state is False else "not visible (CONFIG refused)",
            )
        async with client.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            self.wake()  # anything enqueued while we were not listening
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pump(pubsub))
                tasks.create_task(self._watch(client))

    async def _pump(self, pubsub: PubSub) -> None:
        # listen() blocks on the socket with no per-message timer: two events per job
        # (its ZADD and, when it ends, its ZREM) must cost next to nothing.
        async for message in pubsub.listen():
            if message.get("type") == "message" and message.get("data") in _WAKING_EVENTS:
                if not self.active:
                    self._set_active(True)
                self.wake()

    async def _watch(self, client: Redis) -> None:
        """Re-check the flags now and then; a silent connection fails this and reconnects."""
        while True:
            await asyncio.sleep(_RECHECK_SECONDS)
            async with asyncio.timeout(_CHECK_TIMEOUT):
                state = await self._events_on(client)
            if state is not None:
                self._set_active(state)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff (polling covers the gaps)."""
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while True:
            started = loop.time()
            client = create_redis(
                self.endpoint,
                client_name="chorus-worker-wakeup",
                max_connections=4,
                socket_timeout=None,
            )
            try:
                await self._listen(client)
            except* (RedisError, OSError, TimeoutError) as group:
                exc = group.exceptions[0]
                self._set_active(False)
                if loop.time() - started > _STABLE_SECONDS:
                    backoff = 0.1
                logger.warning("queue wake-ups interrupted (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(_MAX_BACKOFF, backoff * 2)
            finally:
                await client.aclose()
