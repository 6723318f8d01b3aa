"""A small Redis lock: ``SET NX PX`` to take it, compare-and-delete to give it back.

Used where two runs must not overlap — two deliveries of one user's welcome mail, two
``persist_messages`` runs on different workers. The expiry bounds how long a crashed
holder blocks others; release only deletes the lock if it is still ours.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["redis_lock"]

_RELEASE_LUA: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@contextlib.asynccontextmanager
async def redis_lock(redis: Redis, key: str, *, ttl: float) -> AsyncIterator[bool]:
    """Hold ``key`` for the block if it is free; yields whether we got it."""
    token = secrets.token_hex(8)
    acquired = bool(await redis.set(key, token, nx=True, px=max(1, int(ttl * 1000))))
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(RedisError):  # else it expires on its own
                await redis.register_script(_RELEASE_LUA)(keys=[key], args=[token])
