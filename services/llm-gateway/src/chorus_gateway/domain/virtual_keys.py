"""Resolving virtual keys (``sk-chorus-…``) on the hot path, revoked within a second.

The api copies each live key to Redis (``chorus_common.virtual_keys``); this replica
reads a presented key's record once and remembers it for ``GATEWAY_KEY_CACHE_SECONDS``.
A change or revocation is published by the api on the invalidation channel, which every
replica listens to: the entry is dropped at once, so the next request reads Redis again
(and finds the key gone). The cache TTL bounds what a missed message could cost; and
while the listener is not subscribed (starting, or reconnecting after Redis went away)
nothing is served from the cache at all — every lookup reads Redis — so a revocation is
never missed in the gap. Unknown keys are remembered too (a flood of guesses costs Redis
one read per guess per TTL at most), bounded by ``max_entries``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chorus_common.redis_client import create_redis
from chorus_common.virtual_keys import (
    INVALIDATE_ALL,
    INVALIDATION_CHANNEL,
    KeyRecord,
    directory_key,
    secret_digest,
)
from chorus_gateway.metrics import VIRTUAL_KEY_LOOKUPS

__all__ = ["KeyResolver"]

logger = logging.getLogger("chorus.gateway.virtual_keys")

_MAX_BACKOFF = 5.0


class KeyResolver:
    """Finds the record of a presented virtual key: cache, then Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        redis_url: str,
        cache_seconds: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._redis_url = redis_url
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        #: digest -> (monotonic expiry, record or None for "no such key").
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        #: Only while subscribed is a cached entry trusted.
        self.listening = False
        #: Bumped by every invalidation: a read that raced one is not cached.
        self._generation = 0
        self._listener: asyncio.Task[None] | None = None

    async def find(self, secret: str) -> KeyRecord | None:
        """The record of ``secret``, or None if no live key has it. Redis errors propagate."""
        digest = secret_digest(secret)
        now = self._clock()
        if self.listening:
            entry = self._cache.get(digest)
            if entry is not None and entry[0] > now:
                VIRTUAL_KEY_LOOKUPS.labels("cache").inc()
                return entry[1]
        VIRTUAL_KEY_LOOKUPS.labels("redis").inc()
        generation = self._generation
        raw = await self._redis.get(directory_key(digest))
        record: KeyRecord | None = None
        if raw is not None:
            try:
                record = KeyRecord.from_json(raw)
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("unreadable virtual key record %s…: %s", digest[:12], exc)
        if self.listening and generation == self._generation:
            cache = self._cache
            if digest not in cache and len(cache) >= self._max_entries:
                del cache[next(iter(cache))]
            cache[digest] = (now + self._cache_seconds, record)
        return record

    def forget(self, digest: str) -> None:
        """Drop one key's entry (``*``: every entry)."""
        self._generation += 1
        if digest == INVALIDATE_ALL:
            self._cache.clear()
        else:
            self._cache.pop(digest, None)

    def start(self) -> None:
        """Start listening for invalidations."""
        self._listener = asyncio.create_task(self._listen_forever(), name="virtual-key-listener")

    async def stop(self) -> None:
        """Stop listening."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen_forever(self) -> None:
        backoff = 0.1
        while True:
            client = create_redis(
                self._redis_url,
                client_name="chorus-gateway-keys",
                max_connections=2,
                socket_timeout=None,
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(INVALIDATION_CHANNEL)
                    # Whatever changed while nobody listened: start from nothing.
                    self._cache.clear()
                    self.listening = True
                    backoff = 0.1
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            self.forget(data.decode() if isinstance(data, bytes) else str(data))
            except (RedisError, OSError) as exc:
                logger.warning(
                    "virtual key invalidations interrupted (%s); retrying in %.1fs", exc, backoff
                )
            finally:
                self.listening = False
                self._cache.clear()
                await client.aclose()
            await asyncio.sleep(backoff)
            backoff = min(_MAX_BACKOFF, backoff * 2)
