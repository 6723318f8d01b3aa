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

**One bad entry never stalls the rest.** The services refuse text Postgres cannot hold
before it is published, but anything can be written straight into a stream. An entry
that cannot be read, or holds such text, is set aside before the insert; and if Postgres
still refuses the batch (any data or constraint error), the run rolls back and inserts
again with each half of the batch in a savepoint, halving a failing half until the
refused rows stand alone — ``k`` bad rows among ``n`` cost ``O(k log n)`` savepoints, a
clean batch none. Every entry set aside becomes a dead letter (``failed_jobs``,
``function = persist_messages``, ``args = {"room", "entry_id", "entry"}``, ``error`` = why),
in the same transaction as the good rows, is counted in
``chorus_worker_dead_letters_total{function="persist_messages"}`` and logged; progress
then moves past it like any other entry.

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
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_common.events import (
    ENTRY_FIELD,
    STREAM_PREFIX,
    EventBus,
    InvalidChannelError,
    parse_stream_id,
    room_channel,
)
from chorus_common.text import find_unstorable
from chorus_schema.models import FailedJob, RoomMessage, User
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.dead_letters import add_dead_letter
from chorus_worker.domain.errors import refused_by_postgres
from chorus_worker.domain.locks import redis_lock
from chorus_worker.metrics import DEAD_LETTERS, MESSAGES_PERSISTED, PERSIST_GAPS

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
_JOB = "persist_messages"
#: Key of a row dict carrying its stream entry (id, bytes); never inserted.
_ENTRY = "_entry"


def progress_key(room: str) -> str:
    """Where the id of a room's last handled stream entry is kept."""
    return _PROGRESS_PREFIX + room


@dataclass(frozen=True, slots=True)
class _SetAside:
    """A stream entry that will not be stored, and why."""

    room: str
    entry_id: str
    body: bytes
    reason: str


@dataclass(slots=True)
class _Page:
    """What one read of one room returned."""

    room: str
    last_id: str | None
    rows: list[dict[str, Any]]
    set_aside: list[_SetAside]
    full: bool


class _Unusable(ValueError):
    """A stream entry that cannot become a row (the message says why)."""


async def _rooms(bus: EventBus) -> list[str]:
    layout = bus.layout
    rooms = []
    async for key in bus.redis.scan_iter(
        match=layout.pattern(STREAM_PREFIX, ROOM_PREFIX), count=_SCAN_COUNT, _type="stream"
    ):
        raw = key if isinstance(key, bytes) else str(key).encode()
        stream = raw.decode(errors="replace")
        name = layout.channel_of(stream, STREAM_PREFIX).removeprefix(ROOM_PREFIX)
        try:
            room_channel(name)
        except InvalidChannelError:
            # No service publishes there (room names are checked); someone wrote it by hand.
            logger.warning("ignoring stream %r: not a room's history", raw)
            continue
        rooms.append(name)
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
    """The ``room_messages`` row for a stream entry, None if it is not kept.

    Raises :class:`_Unusable` for an entry that should be kept but cannot be.
    """
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
        msg = f"unreadable entry: {type(exc).__name__}: {exc}"
        raise _Unusable(msg) from None
    row = {
        "room": room,
        "stream_ms": ms,
        "stream_seq": seq,
        "type": kind,
        "sender": sender,
        "data": data if isinstance(data, dict) else {"value": data},
        "created_at": created,
    }
    bad = find_unstorable({"from": sender, "data": row["data"]})
    if bad is not None:
        msg = f"{bad[0]} {bad[1]}: Postgres cannot store it"
        raise _Unusable(msg)
    return row


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
        set_aside = []
        for raw_id, fields in entries:
            body = fields.get(ENTRY_FIELD)
            if body is None:
                continue
            entry_id = _text(raw_id)
            try:
                row = _row(room, entry_id, body)
            except _Unusable as exc:
                set_aside.append(_SetAside(room, entry_id, body, str(exc)))
                continue
            if row is not None:
                row[_ENTRY] = (entry_id, body)  # for a dead letter, should Postgres refuse it
                rows.append(row)
        last_id = _text(entries[-1][0]) if entries else None
        pages.append(_Page(room, last_id, rows, set_aside, full=len(entries) == batch))
    return pages


async def _store(session: AsyncSession, rows: list[dict[str, Any]]) -> int:
    """Insert new rows (conflicts are entries stored before); returns how many were new."""
    if not rows:
        return 0
    rows = [{k: v for k, v in row.items() if k != _ENTRY} for row in rows]
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


async def _store_isolating(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> tuple[int, list[_SetAside]]:
    """Insert what Postgres accepts, halving failing batches in savepoints down to the
    rows it refuses; returns how many rows were new, and the refused ones."""
    try:
        async with session.begin_nested():
            return await _store(session, rows), []
    except DBAPIError as exc:
        if not refused_by_postgres(exc):
            raise
        if len(rows) == 1:
            entry_id, body = rows[0][_ENTRY]
            reason = f"Postgres refused it: {_first_line(exc)}"
            return 0, [_SetAside(rows[0]["room"], entry_id, body, reason)]
    middle = len(rows) // 2
    stored_a, refused_a = await _store_isolating(session, rows[:middle])
    stored_b, refused_b = await _store_isolating(session, rows[middle:])
    return stored_a + stored_b, refused_a + refused_b


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"


async def _write_batch(
    sessions: async_sessionmaker[AsyncSession],
    rows: list[dict[str, Any]],
    set_aside: list[_SetAside],
) -> int:
    """Store ``rows`` and dead-letter ``set_aside`` (plus whatever Postgres refuses) in one
    transaction; returns how many rows were new."""
    if not set_aside:
        try:
            async with sessions.begin() as session:
                return await _store(session, rows)
        except DBAPIError as exc:
            if not refused_by_postgres(exc):
                raise
            logger.warning("a batch of room history was refused (%s); isolating", exc.orig)
    async with sessions.begin() as session:
        stored, refused = await _store_isolating(session, rows) if rows else (0, [])
        written = [(item, await _dead_letter(session, item)) for item in [*set_aside, *refused]]
    for item, row_id in written:
        if row_id is None:
            continue  # dead-lettered by an earlier run that died before saving progress
        DEAD_LETTERS.labels(_JOB).inc()
        logger.error(
            "entry %s of room %s dead-lettered as #%d: %s",
            item.entry_id,
            item.room,
            row_id,
            item.reason,
            extra={"dead_letter_id": row_id, "room": item.room},
        )
    return stored


async def _dead_letter(session: AsyncSession, item: _SetAside) -> int | None:
    """Add the dead letter of ``item`` unless it has one; its id (None if it had)."""
    job_id = f"persist:{item.room}:{item.entry_id}"
    if await session.scalar(select(FailedJob.id).where(FailedJob.job_id == job_id).limit(1)):
        return None
    return await add_dead_letter(
        session,
        job_id=job_id,
        function=_JOB,
        args={
            "room": item.room,
            "entry_id": item.entry_id,
            "entry": item.body.decode("utf-8", errors="backslashreplace"),
        },
        error=item.reason,
        tries=1,
    )


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
        set_aside = [item for page in pages for item in page.set_aside]
        persisted += await _write_batch(found.sessions, rows, set_aside)
        # Committed: now, and only now, the progress may move past these entries.
        moved = {page.room: page.last_id for page in pages if page.last_id is not None}
        await _save_progress(redis, moved)
        progress.update(moved)
        pending = [page.room for page in pages if page.full]
        if not pending:
            break
    MESSAGES_PERSISTED.inc(persisted)
    return {"status": "ok", "rooms": len(rooms), "persisted": persisted}
