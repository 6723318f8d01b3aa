"""Rooms' access lists: Postgres holds them, Redis carries a copy every door reads.

Every change of who may enter a room happens with the room's row locked (``FOR UPDATE``)
and takes a new ``acl_version`` from one sequence; the copy is then written to Redis
whole, with that version (:class:`~chorus_common.rooms.RoomDirectory`, where the rule
lives). *When* it is written depends on which way the change goes:

- **taking access away** (a room created or made private, a member removed or leaving, a
  room deleted): before the commit, with the row still locked — and with the event that
  tells realtime to drop the sockets concerned, in the room's own stream. If Redis refuses,
  the transaction rolls back and the request is a 503: access is never left wider than
  Postgres says. (Should the commit fail after the write, the copy is narrower than the
  truth until the resync below repairs it.)
- **giving access** (a member added, a room made public) and role changes: after the
  commit, so a rollback can never leave Redis more open than Postgres. If Redis refuses
  then, the change stands and the copy catches up at the next resync
  (``chorus_api_room_acl_sync_failures_total``).

:class:`RoomAclSync` runs in every api process, at startup and every
``ROOM_ACL_RESYNC_SECONDS``: when Redis does not hold the lists (``chorus:rooms:loaded``
missing — a fresh or emptied Redis), it copies every room, a batch at a time under
``FOR SHARE`` locks, then marks them loaded; otherwise it copies the rooms changed since
its previous pass (and a margin), which repairs any write Redis refused or lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from redis.exceptions import RedisError
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_api.metrics import ROOM_ACL_SYNC_FAILURES
from chorus_api.transport.pool import SessionFactory
from chorus_common.events import EventBus
from chorus_common.rooms import RoomAcl, RoomDirectory, RoomState
from chorus_schema.models import ROOM_ACL_VERSIONS, Room, RoomMember

__all__ = ["AclLoadedCheck", "AclWriter", "RoomAclSync", "acl_of", "bump_version"]

logger = logging.getLogger("chorus.api.room_acl")

_BATCH: Final = 200
#: How far back an incremental resync looks beyond its previous pass (clock skew between
#: api pods, transactions that committed late).
_MARGIN: Final = timedelta(seconds=30)

Event = tuple[str, dict[str, Any]]


async def bump_version(session: AsyncSession, room: Room) -> int:
    """Give ``room`` (locked by the caller) a new access version, in the transaction."""
    version = int(await session.scalar(ROOM_ACL_VERSIONS.next_value().select()) or 0)
    await session.execute(
        update(Room)
        .where(Room.id == room.id)
        .values(acl_version=version, acl_updated_at=func.now())
    )
    room.acl_version = version
    return version


def _state(room: Room) -> RoomState:
    if room.deleted_at is not None:
        return RoomState.DELETED
    return RoomState(room.visibility)


async def acl_of(session: AsyncSession, room: Room) -> RoomAcl:
    """``room``'s access list as the session sees it (the caller holds its row lock)."""
    rows = await session.execute(
        select(RoomMember.user_id, RoomMember.role).where(RoomMember.room_id == room.id)
    )
    members = {str(user_id): role for user_id, role in rows}
    return RoomAcl(_state(room), room.acl_version, members)


class AclWriter:
    """Writes a room's access list (and its event) to Redis, before or after the commit."""

    def __init__(self, directory: RoomDirectory, bus: EventBus) -> None:
        self.directory = directory
        self.bus = bus

    async def narrow(self, room: Room, acl: RoomAcl, event: Event | None = None) -> None:
        """Before the commit, row locked: write ``acl``, which takes access away (and its
        event); Redis errors propagate, so the transaction rolls back."""
        await self.directory.write(room.name, acl, event=event, bus=self.bus)

    async def widen(self, room: Room, acl: RoomAcl, event: Event | None = None) -> None:
        """After the commit: write ``acl`` (read before it); a failure is left to the resync."""
        try:
            await self.directory.write(room.name, acl, event=event, bus=self.bus)
        except (RedisError, OSError) as exc:
            ROOM_ACL_SYNC_FAILURES.inc()
            logger.warning(
                "could not copy a room's access list to Redis (the resync repairs it): %s",
                exc,
                extra={"room": room.name},
            )


class RoomAclSync:
    """Keeps Redis's copy of every access list in step with Postgres."""

    def __init__(self, directory: RoomDirectory) -> None:
        self.directory = directory
        self._since: datetime | None = None

    async def _copy_batch(
        self, open_session: SessionFactory, *, after: int, changed_since: datetime | None
    ) -> int | None:
        """Copy the next batch of rooms after id ``after``; the last id, None when done."""
        async with open_session() as session:
            query = select(Room).where(Room.id > after).order_by(Room.id).limit(_BATCH)
            if changed_since is not None:
                query = query.where(Room.acl_updated_at >= changed_since)
            # FOR SHARE: no change of these rooms can commit (nor write Redis) meanwhile, so
            # the copies written below cannot overtake a newer one: they may be forced.
            rooms: Sequence[Room] = (await session.scalars(query.with_for_update(read=True))).all()
            if not rooms:
                await session.commit()
                return None
            members: dict[int, dict[str, str]] = {room.id: {} for room in rooms}
            rows = await session.execute(
                select(RoomMember.room_id, RoomMember.user_id, RoomMember.role).where(
                    RoomMember.room_id.in_(list(members))
                )
            )
            for room_id, user_id, role in rows:
                members[room_id][str(user_id)] = role
            await asyncio.gather(
                *(
                    self.directory.write(
                        room.name,
                        RoomAcl(_state(room), room.acl_version, members[room.id]),
                        force=True,
                    )
                    for room in rooms
                )
            )
            await session.commit()
            return rooms[-1].id

    async def copy(self, open_session: SessionFactory, *, changed_since: datetime | None) -> None:
        """Copy every room (or those changed since ``changed_since``) to Redis."""
        after: int | None = 0
        while after is not None:
            after = await self._copy_batch(open_session, after=after, changed_since=changed_since)

    async def sync(self, open_session: SessionFactory) -> None:
        """One pass: everything if Redis lacks the lists, else what changed lately."""
        started = datetime.now(UTC)
        if not await self.directory.loaded():
            logger.info("copying every room's access list to Redis")
            await self.copy(open_session, changed_since=None)
            await self.directory.mark_loaded()
        elif self._since is not None:
            await self.copy(open_session, changed_since=self._since - _MARGIN)
        else:
            # A new process: whatever changed while no pass ran here (an hour is plenty;
            # other processes cover their own changes).
            await self.copy(open_session, changed_since=started - timedelta(hours=1))
        self._since = started

    async def run(self, open_session: SessionFactory, *, interval: float) -> None:
        """:meth:`sync` now and every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await self.sync(open_session)
            except (SQLAlchemyError, RedisError, OSError) as exc:
                ROOM_ACL_SYNC_FAILURES.inc()
                logger.warning("room access list resync failed (retrying): %s", exc)
            await asyncio.sleep(interval)


class AclLoadedCheck:
    """Readiness: Redis holds every room's access list (until then, no room can be entered)."""

    def __init__(self, directory: RoomDirectory) -> None:
        self.directory = directory

    async def __call__(self) -> None:
        """Raise until the lists are loaded (:class:`RoomAclSync` loads them at startup)."""
        if not await self.directory.loaded():
            msg = "room access lists are not loaded in Redis yet"
            raise RuntimeError(msg)
