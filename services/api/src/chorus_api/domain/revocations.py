"""Ending an account's tokens everywhere: Postgres holds the revocation, Redis spreads it.

When a password changes (the account's ``token_version`` goes up) or an account is
deleted, :func:`record_revocation` writes the account's new minimum token version into
``token_revocations`` *in the same transaction* — the source of truth. After the commit,
:meth:`Revocations.publish` copies it to Redis (``chorus:token-version:<id>``), where the
api, realtime and the gateway read it (``chorus_common.tokens.TokenVersions``). The copy
only ever raises the value (a Lua max), so a late or repeated write can never bring a
revoked version back.

If Redis refuses that write, or loses its data, the copy is repaired by
:meth:`Revocations.resync`, which every api process runs at startup and every
``TOKEN_RESYNC_SECONDS``: it re-publishes every revocation younger than the longest token
lifetime and deletes older rows, which cannot refuse anything any more.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.metrics import TOKEN_REVOCATION_SYNC_FAILURES
from chorus_api.transport.pool import SessionFactory
from chorus_common.tokens import REVOCATION_TTL_SECONDS, TokenVersions, token_version_key
from chorus_schema.models import TokenRevocation

__all__ = ["Revocations", "record_revocation"]

logger = logging.getLogger("chorus.api.revocations")

# KEYS: the version key. ARGV: minimum version, ttl ms. Raises the value, never lowers it;
# the expiry is the later of the two.
_RAISE_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], wanted, 'PX', ARGV[2])
elseif wanted == current and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return math.max(wanted, current)
"""
_RESYNC_BATCH: Final = 1000


async def record_revocation(session: AsyncSession, *, user_id: int, min_version: int) -> None:
    """In the caller's transaction: from now on ``user_id`` accepts tokens ≥ ``min_version``."""
    statement = insert(TokenRevocation).values(user_id=user_id, min_version=min_version)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[TokenRevocation.user_id],
            set_={
                "min_version": func.greatest(TokenRevocation.min_version, min_version),
                "revoked_at": func.now(),
            },
        )
    )


class Revocations:
    """Copies revocations from Postgres to Redis, at once and periodically."""

    def __init__(self, redis: Redis, versions: TokenVersions) -> None:
        self._raise = redis.register_script(_RAISE_LUA)
        self.versions = versions

    async def publish(self, user_id: int, min_version: int, *, age: float = 0.0) -> bool:
        """Make ``min_version`` visible to every service; False if Redis refused (logged).

        ``age`` (seconds since the revocation) shortens the key's life accordingly.
        """
        ttl_ms = int((REVOCATION_TTL_SECONDS - age) * 1000)
        if ttl_ms <= 0:
            return True
        try:
            await self._raise(keys=[token_version_key(str(user_id))], args=[min_version, ttl_ms])
        except RedisError as exc:
            TOKEN_REVOCATION_SYNC_FAILURES.inc()
            logger.warning(
                "could not publish a token revocation (the next resync retries): %s",
                exc,
                extra={"user_id": user_id},
            )
            return False
        # This process knows at once; the others within TOKEN_VERSION_CACHE_SECONDS.
        self.versions.remember(str(user_id), min_version)
        return True

    async def resync(self, open_session: SessionFactory) -> int:
        """Re-publish every live revocation, delete expired ones; how many were published."""
        horizon = datetime.now(UTC) - timedelta(seconds=REVOCATION_TTL_SECONDS)
        async with open_session() as session:
            rows = (
                await session.execute(
                    select(
                        TokenRevocation.user_id,
                        TokenRevocation.min_version,
                        TokenRevocation.revoked_at,
                    ).where(TokenRevocation.revoked_at > horizon)
                )
            ).all()
            await session.execute(
                delete(TokenRevocation).where(TokenRevocation.revoked_at <= horizon)
            )
            await session.commit()
        now = datetime.now(UTC)
        published = 0
        for start in range(0, len(rows), _RESYNC_BATCH):
            batch = rows[start : start + _RESYNC_BATCH]
            results = await asyncio.gather(
                *(
                    self.publish(
                        row.user_id, row.min_version, age=(now - row.revoked_at).total_seconds()
                    )
                    for row in batch
                )
            )
            published += sum(results)
        return published

    async def run(self, open_session: SessionFactory, *, interval: float) -> None:
        """:meth:`resync` now and every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.resync(open_session)
            except (SQLAlchemyError, RedisError, OSError) as exc:
                TOKEN_REVOCATION_SYNC_FAILURES.inc()
                logger.warning("token revocation resync failed (retrying): %s", exc)
            await asyncio.sleep(interval)
