"""Copying virtual keys to Redis, where every gateway replica resolves them.

Postgres holds the keys (the source of truth). After each change commits,
:meth:`KeyDirectory.publish` writes the key's :class:`~chorus_common.virtual_keys.KeyRecord`
under each digest that may still be presented — the current secret's and, during a
rotation's grace period, the previous one's — each expiring when that secret stops being
valid, deletes the digests that may not, and publishes every digest it touched on the
invalidation channel so each gateway replica drops its cached copy at once.

If Redis refused a write, or lost its data, :meth:`KeyDirectory.resync` (at startup and
every ``KEY_RESYNC_SECONDS``) re-copies every live key and deletes again those revoked in
the last week. A user's own budget is copied the same way (:meth:`KeyDirectory.publish_budget`,
and again at each resync). The spend counters a budget is reserved against live in Redis
too; :meth:`KeyDirectory.spend` reads the current period's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.metrics import KEY_DIRECTORY_SYNC_FAILURES
from chorus_api.transport.pool import SessionFactory
from chorus_common.virtual_keys import (
    INVALIDATION_CHANNEL,
    Budget,
    KeyRecord,
    budget_period,
    directory_key,
    spend_counter,
    user_budget_key,
    user_budget_subject,
)
from chorus_schema.models import Team, User, VirtualKey

__all__ = ["KeyDirectory", "budgets_of", "record_of", "user_budget_of"]

logger = logging.getLogger("chorus.api.keys")

_RESYNC_BATCH = 500


def budgets_of(key: VirtualKey, team: Team | None) -> tuple[Budget, ...]:
    """Every budget a call with ``key`` is reserved against: its own, its team's."""
    budgets = []
    if key.budget_micros is not None and key.budget_period is not None:
        budgets.append(
            Budget(f"vkey:{key.id}", key.budget_micros, budget_period(key.budget_period))
        )
    if team is not None and team.budget_micros is not None and team.budget_period is not None:
        budgets.append(
            Budget(f"team:{team.id}", team.budget_micros, budget_period(team.budget_period))
        )
    return tuple(budgets)


def user_budget_of(user: User) -> Budget | None:
    """The budget every call of ``user`` is reserved against (their keys' and token's)."""
    if user.budget_micros is None or user.budget_period is None:
        return None
    scope = user_budget_subject(user.id)
    return Budget(scope, user.budget_micros, budget_period(user.budget_period))


def owner_of(key: VirtualKey) -> str:
    """``user:<id>`` or ``team:<id>``: the slot of the key's counters."""
    return f"team:{key.team_id}" if key.team_id is not None else f"user:{key.user_id}"


def record_of(key: VirtualKey, team: Team | None) -> KeyRecord:
    """What the gateway needs to know of ``key``."""
    return KeyRecord(
        id=key.id,
        name=key.name,
        owner=owner_of(key),
        user_id=key.user_id,
        team_id=key.team_id,
        models=tuple(key.models) if key.models is not None else None,
        requests_per_minute=key.requests_per_minute,
        tokens_per_minute=key.tokens_per_minute,
        concurrent_streams=key.concurrent_streams,
        expires_at=key.expires_at.timestamp() if key.expires_at is not None else None,
        budgets=budgets_of(key, team),
    )


def _ttl_ms(until: datetime | None, now: datetime) -> int | None:
    """Milliseconds until ``until`` (None: forever; 0: already past)."""
    if until is None:
        return None
    return max(0, int((until - now).total_seconds() * 1000))


class KeyDirectory:
    """Writes keys to Redis and tells the gateways; reads their spend."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def publish(
        self,
        key: VirtualKey,
        team: Team | None,
        *,
        announce: bool = True,
        retired: Sequence[str] = (),
    ) -> bool:
        """Make ``key`` as it now is visible to every gateway; False if Redis refused.

        ``announce`` publishes its digests so every replica drops its cached copy now (a
        resync, which changes nothing the gateways knew, leaves them to their cache TTL).
        ``retired`` digests are deleted too (secrets the key no longer has).
        """
        now = datetime.now(UTC)
        record = record_of(key, team).to_json()
        # Each digest that may still be presented, with how long it stays valid.
        valid: list[tuple[str, datetime | None]] = [(key.digest, key.expires_at)]
        if key.previous_digest is not None:
            until = key.previous_valid_until
            if key.expires_at is not None and (until is None or key.expires_at < until):
                until = key.expires_at
            valid.append((key.previous_digest, until))
        live: list[tuple[str, int | None]] = []
        dead: list[str] = list(retired)
        for digest, until in valid:
            ttl = _ttl_ms(until, now)
            if key.revoked_at is not None or ttl == 0:
                dead.append(digest)
            else:
                live.append((digest, ttl))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for digest, ttl in live:
                    pipe.set(directory_key(digest), record, px=ttl)
                if dead:
                    pipe.delete(*(directory_key(d) for d in dead))
                for digest in [d for d, _ in live] + dead if announce else ():
                    pipe.publish(INVALIDATION_CHANNEL, digest)
                await pipe.execute()
        except RedisError as exc:
            KEY_DIRECTORY_SYNC_FAILURES.inc()
            logger.warning(
                "could not copy a virtual key to Redis (the next resync retries): %s",
                exc,
                extra={"key_id": key.id},
            )
            return False
        return True

    async def publish_budget(self, user: User, *, announce: bool = True) -> bool:
        """Make ``user``'s own budget (or its absence) visible to every gateway; False if
        Redis refused."""
        budget = user_budget_of(user)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                if budget is None:
                    pipe.delete(user_budget_key(user.id))
                else:
                    pipe.set(user_budget_key(user.id), budget.to_json())
                if announce:
                    pipe.publish(INVALIDATION_CHANNEL, user_budget_subject(user.id))
                await pipe.execute()
        except RedisError as exc:
            KEY_DIRECTORY_SYNC_FAILURES.inc()
            logger.warning(
                "could not copy a user's budget to Redis (the next resync retries): %s",
                exc,
                extra={"user_id": user.id},
            )
            return False
        return True

    async def spend(self, keys: Sequence[tuple[VirtualKey, Team | None]]) -> list[int | None]:
        """The current period's spend (micros) of each key's own budget (None: no budget)."""
        now = datetime.now(UTC)
        counters: list[str | None] = []
        for key, _team in keys:
            own = budgets_of(key, None)
            counters.append(spend_counter(owner_of(key), own[0], now)[0] if own else None)
        wanted = [c for c in counters if c is not None]
        values = await self._redis.mget(wanted) if wanted else []
        found = dict(zip(wanted, values, strict=True))
        return [None if c is None else max(0, int(found.get(c) or 0)) for c in counters]

    async def team_spend(self, team: Team) -> int | None:
        """The current period's spend (micros) of a team's budget (None: no budget)."""
        if team.budget_micros is None or team.budget_period is None:
            return None
        budget = Budget(f"team:{team.id}", team.budget_micros, budget_period(team.budget_period))
        return await self._spent(budget.scope, budget)

    async def user_spend(self, user: User) -> int | None:
        """The current period's spend (micros) of a user's own budget (None: no budget)."""
        budget = user_budget_of(user)
        if budget is None:
            return None
        return await self._spent(budget.scope, budget)

    async def _spent(self, tag: str, budget: Budget) -> int:
        """The current period's spend of ``budget``, counted in the slot ``tag``."""
        raw = await self._redis.get(spend_counter(tag, budget, datetime.now(UTC))[0])
        return max(0, int(raw or 0))

    async def resync(self, open_session: SessionFactory) -> int:
        """Re-copy every live key (and re-delete recently revoked ones) and every user's
        budget; how many keys."""
        now = datetime.now(UTC)
        async with open_session() as session:
            rows = await _live_keys(session, now)
            budgeted = list(
                (await session.scalars(select(User).where(User.budget_micros.is_not(None)))).all()
            )
        for start in range(0, len(budgeted), _RESYNC_BATCH):
            users = budgeted[start : start + _RESYNC_BATCH]
            await asyncio.gather(*(self.publish_budget(u, announce=False) for u in users))
        copied = 0
        for start in range(0, len(rows), _RESYNC_BATCH):
            batch = rows[start : start + _RESYNC_BATCH]
            results = await asyncio.gather(
                *(self.publish(key, team, announce=False) for key, team in batch)
            )
            copied += sum(results)
        return copied

    async def run(self, open_session: SessionFactory, *, interval: float) -> None:
        """:meth:`resync` now and every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.resync(open_session)
            except (SQLAlchemyError, RedisError, OSError) as exc:
                KEY_DIRECTORY_SYNC_FAILURES.inc()
                logger.warning("virtual key resync failed (retrying): %s", exc)
            await asyncio.sleep(interval)


#: Keys revoked this recently are deleted from Redis again at every resync, in case the
#: deletion after the revocation did not reach it.
REVOKED_HORIZON = timedelta(days=7)


async def _live_keys(session: AsyncSession, now: datetime) -> list[tuple[VirtualKey, Team | None]]:
    """Live keys, and those revoked or expired within the horizon (to delete again)."""
    horizon = now - REVOKED_HORIZON
    statement = (
        select(VirtualKey, Team)
        .outerjoin(Team, Team.id == VirtualKey.team_id)
        .where(
            or_(VirtualKey.revoked_at.is_(None), VirtualKey.revoked_at > horizon),
            or_(VirtualKey.expires_at.is_(None), VirtualKey.expires_at > horizon),
        )
    )
    return [(key, team) for key, team in (await session.execute(statement)).all()]
