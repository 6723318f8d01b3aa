"""``persist_messages()``: room history from the Redis streams into Postgres, exactly once.

A cron job (every ``PERSIST_INTERVAL`` seconds, on one worker at a time). Each run:

1. finds the rooms: ``SCAN MATCH chorus:stream:room:* TYPE stream`` where the channels
   live (on a Redis Cluster: ``chorus:stream:{room:*}`` on every primary);
2. reads each room's progress — the id of the last stream entry already handled, kept in
   ``chorus:persist:progress:<room>`` (and, if Redis lost it, the newest position in
   ``room_messages``) — and the entries after it, ``PERSIST_BATCH`` per room and page;
3. inserts the ``message`` and ``ai.done`` events in one transaction, ``ON CONFLICT DO
   NOTHING`` on the unique (room, stream position), and commits;
4. only then moves each room's progress past everything it read (other types included).

A crash between 3 and 4 re-reads those entries next run and the conflict clause makes
them no-ops; a crash before 3 commits loses nothing, since progress had not moved. So
every entry is stored once, unless the stream was trimmed past it before any run got to
it (``MAXLEN ~`` history, or the stream's TTL after a long outage) — that is logged and
counted in ``chorus_worker_persist_gaps_total``.

**Finding rooms with SCAN** costs one round trip per ~1000 keys of the whole keyspace,
each run. It needs nobody's cooperation, and stays in the low milliseconds up to ~100k
keys; past that, the publish script could ``SADD`` each room to a set (a change to
``chorus_common.events`` for its owners), making discovery O(active rooms). A Redis lock
(``chorus:persist:lock``) keeps runs on different workers from overlapping: overlapping
runs would be correct, only wasteful. The lock and the progress stay on the main Redis
with the queue; the streams are read where the channels live (``found.bus``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on, insert
from sqlalchemy.ext.asyncio import AsyncSession

from chorus_common.events import ENTRY_FIELD, STREAM_PREFIX, EventBus, parse_stream_id
from chorus_schema.models import RoomMessage, User
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.locks import redis_lock
from chorus_worker.metrics import MESSAGES_PERSISTED, PERSIST_GAPS

__all__ = ["LOCK_KEY", "PERSISTED_TYPES", "persist_messages", "progress_key"]

logger = logging.getLogger("chorus.worker.persistence")

#: Room events kept in Postgres; the rest (deltas, joins, typing) live only in Redis.
PERSISTED_TYPES: Final = frozenset({"message", "ai.done"})
ROOM_PREFIX: Final = "room:"
LOCK_KEY: Final = "chorus:persist:lock"
_PROGRESS_PREFIX: Final = "chorus:persist:progress:"
#: Longer than the streams' own TTL (a day): progress outlives the history it points into.
_PROGRESS_TTL_SECONDS: Final = 7 * 86_400
#: Pages per run, so one run stays short however far behind it is; the next run goes on.
_MAX_PAGES: Final = 10
_SCAN_COUNT: Final = 1000
_MAX_USER_ID_DIGITS: Final = 18  # fits a BIGINT


def progress_key(room: str) -> str:
    """Where the id of a room's last handled stream entry is kept."""
    return _PROGRESS_PREFIX + room


@dataclass(slots=True)
class _Page:
    """What one read of one room returned."""

    room: str
    last_id: str | None
    rows: list[dict[str, Any]]
    full: bool


async def _rooms(bus: EventBus) -> list[str]:
    layout = bus.layout
    rooms = []
    async for key in bus.redis.scan_iter(
        match=layout.pattern(STREAM_PREFIX, ROOM_PREFIX), count=_SCAN_COUNT, _type="stream"
    ):
        name = key.decode() if isinstance(key, bytes) else str(key)
        rooms.append(layout.channel_of(name, STREAM_PREFIX).removeprefix(ROOM_PREFIX))
    return sorted(rooms)


async def _persisted_positions(session: AsyncSession, rooms: list[str]) -> dict[str, str]:
    """The newest stored position of each room (used when Redis lost the progress)."""
    result = await session.execute(
        select(RoomMessage.room, RoomMessage.stream_ms, RoomMessage.stream_seq)
        .where(RoomMessage.room.in_(rooms))
        .ext(distinct_on(RoomMessage.room))
        .order_by(RoomMessage.room, RoomMessage.stream_ms.desc(), RoomMessage.stream_seq.desc())
    )
    return {room: f"{ms}-{seq}" for room, ms, seq in result.all()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _row(room: str, entry_id: str, body: bytes) -> dict[str, Any] | None:
    """The ``room_messages`` row for a stream entry, or None if it is not kept."""
    try:
        event = orjson.loads(body)
        kind = event["type"]
        if kind not in PERSISTED_TYPES:
            return None
        ms, seq = parse_stream_id(entry_id)
        sender = str(event.get("from", ""))[:64]
        data = event.get("data")
        created = _timestamp(event.get("ts"), ms)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        logger.warning("skipping unreadable entry %s of room %s: %s", entry_id, room, exc)
        return None
    return {
        "room": room,
        "stream_ms": ms,
        "stream_seq": seq,
        "type": kind,
        "sender": sender,
        "data": data if isinstance(data, dict) else {"value": data},
        "created_at": created,
    }


def _timestamp(value: object, stream_ms: int) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return datetime.fromtimestamp(stream_ms / 1000, tz=UTC)


async def _read(
    bus: EventBus, rooms: list[str], progress: dict[str, str | None], batch: int
) -> list[_Page]:
    """One page of new entries per room, pipelined; notes rooms trimmed past their progress."""
    async with bus.redis.pipeline(transaction=False) as pipe:
        for room in rooms:
            key = bus.layout.stream(ROOM_PREFIX + room)
            since = progress[room]
            if since is None:
                pipe.xrange(key, min="-", max="+", count=batch)
                pipe.xrange(key, min="-", max="+", count=1)  # keeps replies in pairs
            else:
                pipe.xrange(key, min=f"({since}", max="+", count=batch)
                pipe.xrange(key, min=since, max=since, count=1)
        replies = await pipe.execute()
    pages = []
    for index, room in enumerate(rooms):
        entries, anchor = replies[2 * index], replies[2 * index + 1]
        since = progress[room]
        if since is not None and not anchor and entries:
            first = parse_stream_id(_text(entries[0][0]))
            if first > parse_stream_id(since):
                # Our last entry is gone and newer ones exist: some in between may be too.
                PERSIST_GAPS.inc()
                logger.warning(
                    "room %s was trimmed past its persisted position %s; events may be lost",
                    room,
                    since,
                )
        rows = []
        for raw_id, fields in entries:
            body = fields.get(ENTRY_FIELD)
            if body is None:
                continue
            row = _row(room, _text(raw_id), body)
            if row is not None:
                rows.append(row)
        last_id = _text(entries[-1][0]) if entries else None
        pages.append(_Page(room, last_id, rows, full=len(entries) == batch))
    return pages


async def _store(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert new rows (conflicts are entries stored before); returns how many were new."""
    if not rows:
        return 0
    candidates = {
        int(r["sender"])
        for r in rows
        if r["sender"].isdigit() and len(r["sender"]) <= _MAX_USER_ID_DIGITS
    }
    known: set[int] = set()
    if candidates:
        known = set((await session.scalars(select(User.id).where(User.id.in_(candidates)))).all())
    for row in rows:
        sender = row["sender"]
        is_user = sender.isdigit() and len(sender) <= _MAX_USER_ID_DIGITS
        row["user_id"] = int(sender) if is_user and int(sender) in known else None
    result = await session.execute(
        insert(RoomMessage)
        .on_conflict_do_nothing(constraint="uq_room_messages_position")
        .returning(RoomMessage.id),
        rows,
    )
    return len(result.all())


async def _save_progress(redis: Redis, positions: dict[str, str]) -> None:
    if not positions:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for room, last_id in positions.items():
            pipe.set(progress_key(room), last_id, ex=_PROGRESS_TTL_SECONDS)
        await pipe.execute()


async def persist_messages(ctx: JobContext) -> dict[str, Any]:
    """Copy new ``message`` and ``ai.done`` room events into ``room_messages``."""
    found = resources(ctx)
    async with redis_lock(found.redis, LOCK_KEY, ttl=found.settings.job_timeout) as mine:
        if not mine:
            return {"status": "busy"}
        return await _persist(ctx)


async def _persist(ctx: JobContext) -> dict[str, Any]:
    """One locked run: every room, page by page."""
    found = resources(ctx)
    redis = found.redis
    rooms = await _rooms(found.bus)
    if not rooms:
        return {"status": "ok", "rooms": 0, "persisted": 0}
    stored = await redis.mget([progress_key(r) for r in rooms])
    progress: dict[str, str | None] = {
        room: (_text(v) if v is not None else None) for room, v in zip(rooms, stored, strict=True)
    }
    missing = [room for room, since in progress.items() if since is None]
    if missing:
        async with found.sessions() as session:
            recovered = await _persisted_positions(session, missing)
        progress.update(recovered)
        await _save_progress(redis, recovered)  # already stored, so safe to remember
    persisted = 0
    pending = rooms
    for _ in range(_MAX_PAGES):
        pages = await _read(found.bus, pending, progress, found.settings.persist_batch)
        rows = [row for page in pages for row in page.rows]
        async with found.sessions.begin() as session:
            persisted += await _store(session, rows)
        # Committed: now, and only now, the progress may move past these entries.
        moved = {page.room: page.last_id for page in pages if page.last_id is not None}
        await _save_progress(redis, moved)
        progress.update(moved)
        pending = [page.room for page in pages if page.full]
        if not pending:
            break
    MESSAGES_PERSISTED.inc(persisted)
    return {"status": "ok", "rooms": len(rooms), "persisted": persisted}
