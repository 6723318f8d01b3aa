"""The room guard: who may enter a room here, and who loses access while inside.

**At the door** every room subscription — a socket's own room, a ``subscribe`` frame, a
resume — asks the rule of ``chorus_common.rooms`` (one Lua call to Redis, no cache) twice:
before subscribing, so an outsider costs one call and no subscription; and again once the
subscription is live and before any history is read, so no change can slip between the
check and the subscription. Writes need no check here: messages and typing indicators are
published by a script that applies the same rule atomically in Redis.

**Inside**, access is taken away by events in the room's own stream (``member.removed``
from a private room, ``room.updated`` to private, ``room.deleted``). The hub hands each
one to :meth:`RoomGuard.on_access_event` before it delivers it, and the guard revokes the
subscriptions it concerns at once (:meth:`Connection.revoke`): their owners receive
neither that event nor anything published after it, on every replica, in stream order —
also when the hub replays a gap after a lost pub/sub connection. The per-delivery path
checks nothing.

**The bound on a missed event.** Every ``ROOM_ACCESS_RECHECK_SECONDS`` the guard reads the
access versions of the rooms subscribed here (one pipelined read) and re-checks the
subscribers of any room whose version moved past the last one this replica saw; one it
could not tell about (the access lists are gone from Redis) is closed with 1013. So even
if an event never arrived, nobody keeps access longer than that.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable

import orjson

from chorus_common.events import room_channel
from chorus_common.rooms import (
    Access,
    DirectoryUnavailableError,
    RoomDirectory,
    Verdict,
    revocation,
)
from chorus_realtime.domain.connection import Connection
from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.domain.hub import Hub
from chorus_realtime.domain.periodic import Periodic
from chorus_realtime.domain.registry import Registry
from chorus_realtime.metrics import ROOM_REFUSALS, ROOM_REVOCATIONS

__all__ = ["ROOM_PREFIX", "RoomGuard"]

logger = logging.getLogger("chorus.realtime.access")

ROOM_PREFIX = "room:"


class RoomGuard:
    """Checks room access at the door and takes it away inside, on this replica."""

    def __init__(
        self, directory: RoomDirectory, hub: Hub, registry: Registry, *, interval: float
    ) -> None:
        self.directory = directory
        self.hub = hub
        self.registry = registry
        self.interval = interval
        #: The newest access version of each room this replica has seen (checks, events).
        self._seen: dict[str, int] = {}
        self._periodic = Periodic(
            self.recheck, interval=interval, name="room-guard", what="re-check room access"
        )

    # -- at the door -------------------------------------------------------------------------

    async def check(self, room: str, user: str, *, action: str) -> Access:
        """The rule's answer; refusals counted by ``action`` (join, subscribe, presence…).

        :class:`DirectoryUnavailableError` (counted too) when nobody can tell.
        """
        try:
            access = await self.directory.check(room, user)
        except DirectoryUnavailableError:
            ROOM_REFUSALS.labels(action, "unavailable").inc()
            raise
        channel = room_channel(room)
        if access.version > self._seen.get(channel, 0):
            self._seen[channel] = access.version
        if not access.allowed:
            ROOM_REFUSALS.labels(action, "forbidden").inc()
        return access

    # -- inside: events in the room's stream -------------------------------------------------

    def on_access_event(self, channel: str, frame: OutFrame) -> None:
        """An access event of ``channel``, before anyone here receives it (called by the hub)."""
        try:
            envelope = orjson.loads(frame.data if frame.data is not None else frame.text)
            data = envelope.get("data")
            taken = revocation(str(envelope.get("type")), data if isinstance(data, dict) else {})
        except (orjson.JSONDecodeError, AttributeError):
            logger.warning("an unreadable access event on %s", channel)
            return
        if taken is None:
            return
        if taken.version > self._seen.get(channel, 0):
            self._seen[channel] = taken.version
        for connection in self._subscribers(channel):
            if taken.concerns(connection.user):
                self._revoke(connection, channel, taken.reason)

    def _subscribers(self, channel: str) -> list[Connection]:
        return [c for c in self.hub.subscribers(channel) if isinstance(c, Connection)]

    @staticmethod
    def _revoke(connection: Connection, channel: str, reason: str) -> None:
        ROOM_REVOCATIONS.labels(reason).inc()
        logger.info("revoking %s from %s: %s", connection, channel, reason)
        connection.revoke(channel, reason)

    # -- inside: the periodic re-check -------------------------------------------------------

    def _rooms_here(self) -> dict[str, list[Connection]]:
        rooms: defaultdict[str, list[Connection]] = defaultdict(list)
        for connection in self.registry:
            if connection.closing:
                continue
            for channel in connection.channels:
                if channel.startswith(ROOM_PREFIX):
                    rooms[channel].append(connection)
        return rooms

    async def recheck(self) -> int:
        """Re-check the rooms whose access changed unseen here; how many were revoked."""
        rooms = self._rooms_here()
        for channel in list(self._seen):
            if channel not in rooms:
                del self._seen[channel]
        if not rooms:
            return 0
        if not await self.directory.loaded():
            # The lists are gone from Redis: nobody here can be told to stay.
            logger.warning("room access lists unavailable: closing every room here")
            revoked = 0
            for channel, connections in rooms.items():
                for connection in connections:
                    self._revoke(connection, channel, "unavailable")
                    revoked += 1
            return revoked
        names = {channel: channel.removeprefix(ROOM_PREFIX) for channel in rooms}
        versions = await self.directory.versions(names.values())
        revoked = 0
        for channel, connections in rooms.items():
            version = versions[names[channel]]
            # Equal: nothing changed unseen. Higher: an event was missed. Lower: Redis lost
            # the list (the check then says whether the lists are there at all).
            if version == self._seen.get(channel, 0):
                continue
            revoked += await self._recheck_room(channel, names[channel], connections, version)
        return revoked

    async def _recheck_room(
        self, channel: str, room: str, connections: Iterable[Connection], version: int
    ) -> int:
        connections = list(connections)
        users = sorted({c.user for c in connections})
        try:
            checked, verdicts = await self.directory.check_many(room, users)
        except DirectoryUnavailableError:
            logger.warning("room access lists unavailable: closing %s here", channel)
            for connection in connections:
                self._revoke(connection, channel, "unavailable")
            return len(connections)
        self._seen[channel] = max(checked, version)
        revoked = 0
        for connection in connections:
            if verdicts[connection.user] is Verdict.DENIED and channel in connection.channels:
                self._revoke(connection, channel, "recheck")
                revoked += 1
        return revoked

    def start(self) -> None:
        """Re-check every ``interval`` seconds in the background (a turn Redis refuses is
        skipped: the pub/sub connection is away then too, and nothing is delivered)."""
        self._periodic.start()

    async def stop(self) -> None:
        """Stop re-checking."""
        await self._periodic.stop()
