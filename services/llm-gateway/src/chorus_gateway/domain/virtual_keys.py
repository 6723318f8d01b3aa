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

A user's own budget is resolved the same way (:meth:`KeyResolver.user_budget`): read
once, cached, dropped when the api publishes ``user:<id>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chorus_common.redis_client import RedisEndpoint, create_redis
from chorus_common.virtual_keys import (
    INVALIDATE_ALL,
    INVALIDATION_CHANNEL,
    Budget,
    KeyRecord,
    directory_key,
    secret_digest,
    user_budget_subject,
)
from chorus_gateway.metrics import VIRTUAL_KEY_LOOKUPS

__all__ = ["KeyResolver"]

logger = logging.getLogger("chorus.gateway.virtual_keys")

_MAX_BACKOFF = 5.0

_T = TypeVar("_T")


class KeyResolver:
    """Finds the record of a presented virtual key: cache, then Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        redis_url: str | RedisEndpoint,
        cache_seconds: float,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._redis_url = redis_url
        self._cache_seconds = cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        #: digest (or ``user:<id>``) -> (monotonic expiry, the key's record or the user's
        #: budget; None for "none").
        self._cache: dict[str, tuple[float, object]] = {}
        #: Only while subscribed is a cached entry trusted.
        self.listening = False
        #: Bumped by every invalidation: a read that raced one is not cached.
        self._generation = 0
        self._listener: asyncio.Task[None] | None = None

    async def find(self, secret: str) -> KeyRecord | None:
        """The record of ``secret``, or None if no live key has it. Redis errors propagate."""
        record, cached = await self._read(secret_digest(secret), KeyRecord.from_json)
        VIRTUAL_KEY_LOOKUPS.labels("cache" if cached else "redis").inc()
        return record

    async def user_budget(self, user_id: int) -> Budget | None:
        """The user's own budget, or None. Redis errors propagate."""
        budget, _cached = await self._read(user_budget_subject(user_id), Budget.from_json)
        return budget

    async def _read(self, name: str, parse: Callable[[bytes], _T]) -> tuple[_T | None, bool]:
        """What ``chorus:vkey:<name>`` holds (None: nothing), and whether from the cache."""
        now = self._clock()
        if self.listening:
            entry = self._cache.get(name)
            if entry is not None and entry[0] > now:
                return cast("_T | None", entry[1]), True
        generation = self._generation
        raw = await self._redis.get(directory_key(name))
        value: _T | None = None
        if raw is not None:
            try:
                value = parse(raw)
            except (ValueError, KeyError, TypeError) as exc:
                logger.error("unreadable record chorus:vkey:%s…: %s", name[:12], exc)
        if self.listening and generation == self._generation:
            cache = self._cache
            if name not in cache and len(cache) >= self._max_entries:
                del cache[next(iter(cache))]
            cache[name] = (now + self._cache_seconds, value)
        return value, False

    def forget(self, digest: str) -> None:
        """Drop one key's (or ``user:<id>``'s budget) entry (``*``: every entry)."""
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
