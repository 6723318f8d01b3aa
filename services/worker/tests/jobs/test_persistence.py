"""persist_messages: room history into Postgres, each entry once, whatever crashes when."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from sqlalchemy import select, text

from chorus_common.events import room_channel, stream_key
from chorus_schema.models import FailedJob, RoomMessage, User
from chorus_worker.jobs.persistence import LOCK_KEY, persist_messages, progress_key
from chorus_worker.resources import JobContext, Resources

from ..harness import Harness, eventually, metric, running_worker


@pytest.fixture
async def ctx(harness: Harness) -> AsyncIterator[JobContext]:
    resources = Resources.open(harness.settings, harness.queue)
    try:
        yield harness.job_context(resources)
    finally:
        await resources.close()


async def _stored(harness: Harness) -> list[RoomMessage]:
    async with harness.sessions() as session:
        query = select(RoomMessage).order_by(
            RoomMessage.room, RoomMessage.stream_ms, RoomMessage.stream_seq
        )
        return list((await session.scalars(query)).all())


async def _conversation(harness: Harness, user: User) -> list[str]:
    """A little of everything a room sees; returns the ids of the events worth keeping."""
    bus, lobby = harness.bus, room_channel("lobby")
    kept = []
    await bus.publish(lobby, "join", {"user_id": str(user.id), "count": 1}, sender="realtime")
    kept.append((await bus.publish(lobby, "message", {"message": "hi"}, sender=str(user.id))).id)
    await bus.publish_ephemeral(lobby, "typing", {}, sender=str(user.id))
    await bus.publish(
        lobby, "ai.delta", {"reply_to": kept[0], "delta": "he", "index": 0}, sender="assistant"
    )
    done = {"reply_to": kept[0], "message": "hello", "usage": None}
    kept.append((await bus.publish(lobby, "ai.done", done, sender="assistant")).id)
    other = room_channel("other.room")
    kept.append((await bus.publish(other, "message", {"message": "yo"}, sender="999")).id)
    return kept


async def _user(harness: Harness) -> User:
    async with harness.sessions.begin() as session:
        user = User(email="p@example.com", full_name="P", password_hash="x")
        session.add(user)
    return user


async def test_messages_and_answers_are_copied_with_their_position_and_sender(
    harness: Harness, ctx: JobContext
) -> None:
    user = await _user(harness)
    kept = await _conversation(harness, user)
    persisted_before = metric("chorus_worker_messages_persisted_total")

    result = await persist_messages(ctx)

    assert result == {"status": "ok", "rooms": 2, "persisted": 3}
    rows = await _stored(harness)
    assert [(r.room, f"{r.stream_ms}-{r.stream_seq}") for r in rows] == [
        ("lobby", kept[0]),
        ("lobby", kept[1]),
        ("other.room", kept[2]),
    ]
    hi, answer, yo = rows
    assert (hi.type, hi.sender, hi.user_id, hi.data) == (
        "message",
        str(user.id),
        user.id,
        {"message": "hi"},
    )
    assert (answer.type, answer.sender, answer.user_id) == ("ai.done", "assistant", None)
    assert answer.data["message"] == "hello"
    assert (yo.sender, yo.user_id) == ("999", None)  # numeric, but nobody's id
    assert hi.created_at.tzinfo is not None
    assert metric("chorus_worker_messages_persisted_total") == persisted_before + 3


async def test_running_again_stores_nothing_twice_and_picks_up_new_events(
    harness: Harness, ctx: JobContext
) -> None:
    user = await _user(harness)
    await _conversation(harness, user)
    await persist_messages(ctx)
    assert (await persist_messages(ctx))["persisted"] == 0
    later = await harness.bus.publish(
        room_channel("lobby"), "message", {"message": "again"}, sender=str(user.id)
    )
    assert (await persist_messages(ctx))["persisted"] == 1
    rows = await _stored(harness)
    assert len(rows) == 4
    assert f"{rows[2].stream_ms}-{rows[2].stream_seq}" == later.id


async def test_a_crash_after_the_commit_but_before_the_progress_moved_duplicates_nothing(
    harness: Harness, ctx: JobContext
) -> None:
    user = await _user(harness)
    await _conversation(harness, user)
    await persist_messages(ctx)
    progress = await harness.queue.get(progress_key("lobby"))
    await harness.bus.publish(room_channel("lobby"), "message", {"message": "one more"}, sender="x")
    await persist_messages(ctx)
    # Put the progress back where it was before that run: the state a worker killed
    # between its commit and its progress update leaves behind.
    await harness.queue.set(progress_key("lobby"), progress)
    assert (await persist_messages(ctx))["persisted"] == 0
    assert len(await _stored(harness)) == 4


async def test_lost_progress_falls_back_to_what_postgres_holds(
    harness: Harness, ctx: JobContext
) -> None:
    user = await _user(harness)
    await _conversation(harness, user)
    await persist_messages(ctx)
    await harness.queue.delete(progress_key("lobby"), progress_key("other.room"))
    assert (await persist_messages(ctx))["persisted"] == 0
    assert len(await _stored(harness)) == 3
    # ...and the progress is back, past everything read.
    assert await harness.queue.get(progress_key("lobby")) is not None


async def test_long_backlogs_are_read_page_by_page(harness: Harness) -> None:
    settings = harness.settings.model_copy(update={"persist_batch": 3})
    resources = Resources.open(settings, harness.queue)
    ctx = harness.job_context(resources)
    try:
        for n in range(10):
            await harness.bus.publish(
                room_channel("busy"), "message", {"message": str(n)}, sender="x"
            )
        assert (await persist_messages(ctx))["persisted"] == 10
    finally:
        await resources.close()
    assert [r.data["message"] for r in await _stored(harness)] == [str(n) for n in range(10)]


async def test_a_trimmed_stream_is_reported_as_a_gap(harness: Harness, ctx: JobContext) -> None:
    lobby = room_channel("lobby")
    await harness.bus.publish(lobby, "message", {"message": "first"}, sender="x")
    await persist_messages(ctx)
    for n in range(5):
        await harness.bus.publish(lobby, "message", {"message": str(n)}, sender="x")
    await harness.queue.xtrim(stream_key(lobby), maxlen=2, approximate=False)
    gaps = metric("chorus_worker_persist_gaps_total")
    assert (await persist_messages(ctx))["persisted"] == 2
    assert metric("chorus_worker_persist_gaps_total") == gaps + 1


async def test_only_one_run_at_a_time(harness: Harness, ctx: JobContext) -> None:
    await harness.queue.set(LOCK_KEY, "another-worker", px=10_000)
    assert await persist_messages(ctx) == {"status": "busy"}


async def _dead_letters(harness: Harness) -> list[FailedJob]:
    async with harness.sessions() as session:
        return list((await session.scalars(select(FailedJob).order_by(FailedJob.id))).all())


def _envelope(room: str, message: object, sender: str = "42") -> bytes:
    """An entry as the EventBus writes it (without its id), bypassing every check."""
    return orjson.dumps(
        {
            "channel": room_channel(room),
            "type": "message",
            "data": {"message": message},
            "ts": "2026-11-29T10:00:00.000Z",
            "from": sender,
        }
    )


async def test_an_unreadable_entry_becomes_a_dead_letter(harness: Harness, ctx: JobContext) -> None:
    key = stream_key(room_channel("lobby"))
    bad = (await harness.queue.xadd(key, {"e": b"not json"})).decode()
    await harness.bus.publish(room_channel("lobby"), "message", {"message": "ok"}, sender="x")
    assert (await persist_messages(ctx))["persisted"] == 1
    [dead] = await _dead_letters(harness)
    assert (dead.function, dead.job_id) == ("persist_messages", f"persist:lobby:{bad}")
    assert dead.args == {"room": "lobby", "entry_id": bad, "entry": "not json"}
    assert dead.error.startswith("unreadable entry")


async def test_a_poisoned_entry_stalls_no_room(
    harness: Harness, ctx: JobContext, caplog: pytest.LogCaptureFixture
) -> None:
    """NUL written straight into a stream (behind every validation): Postgres refuses it
    in JSONB, and before, the one transaction of every room failed on every run."""
    lobby, other = room_channel("lobby"), room_channel("other.room")
    await harness.bus.publish(lobby, "message", {"message": "before"}, sender="x")
    poison = await harness.queue.xadd(stream_key(lobby), {"e": _envelope("lobby", "a\x00b")})
    poison_id = poison.decode()
    await harness.bus.publish(lobby, "message", {"message": "after"}, sender="x")
    await harness.bus.publish(other, "message", {"message": "elsewhere"}, sender="y")
    dead_before = metric("chorus_worker_dead_letters_total", function="persist_messages")

    result = await persist_messages(ctx)

    assert (result["status"], result["persisted"]) == ("ok", 3)
    stored = [(r.room, r.data["message"]) for r in await _stored(harness)]
    assert stored == [("lobby", "before"), ("lobby", "after"), ("other.room", "elsewhere")]
    [dead] = await _dead_letters(harness)
    assert dead.job_id == f"persist:lobby:{poison_id}"
    assert "NUL" in dead.error
    assert '"a\\u0000b"' in dead.args["entry"]  # the entry as JSON text: Postgres takes that
    assert metric("chorus_worker_dead_letters_total", function="persist_messages") == (
        dead_before + 1
    )
    assert any(f"dead-lettered as #{dead.id}" in r.getMessage() for r in caplog.records)

    # The progress moved past it: later runs go on, and record it only once.
    await harness.bus.publish(lobby, "message", {"message": "later"}, sender="x")
    assert (await persist_messages(ctx))["persisted"] == 1
    await harness.queue.delete(progress_key("lobby"))  # even re-reading it from the start
    await persist_messages(ctx)
    assert len(await _dead_letters(harness)) == 1


async def test_a_row_postgres_refuses_is_isolated_from_its_batch(
    harness: Harness, ctx: JobContext
) -> None:
    """Whatever slips past the checks: batches are halved in savepoints down to the refused
    row, which becomes a dead letter while every other row of the batch is stored."""
    # A refusal only the database knows about (as a constraint added by a later schema,
    # or a value out of some range, would be).
    async with harness.sessions.begin() as session:
        await session.execute(
            text(
                "ALTER TABLE room_messages ADD CONSTRAINT test_refused "
                "CHECK (data->>'message' <> 'refused by postgres')"
            )
        )
    try:
        lobby, other = room_channel("lobby"), room_channel("other.room")
        for n in range(12):
            text_ = "refused by postgres" if n in (4, 9) else f"m{n}"
            await harness.bus.publish(lobby, "message", {"message": text_}, sender="x")
            await harness.bus.publish(other, "message", {"message": f"o{n}"}, sender="y")
        result = await persist_messages(ctx)
    finally:
        async with harness.sessions.begin() as session:
            await session.execute(text("ALTER TABLE room_messages DROP CONSTRAINT test_refused"))
    assert result["persisted"] == 22
    stored = await _stored(harness)
    assert [r.data["message"] for r in stored if r.room == "lobby"] == [
        f"m{n}" for n in range(12) if n not in (4, 9)
    ]
    assert [r.data["message"] for r in stored if r.room == "other.room"] == [
        f"o{n}" for n in range(12)
    ]
    dead = await _dead_letters(harness)
    assert len(dead) == 2
    assert all("CheckViolationError" in d.error and "test_refused" in d.error for d in dead)
    assert all('"refused by postgres"' in d.args["entry"] for d in dead)


async def test_the_worker_runs_it_every_second(harness: Harness) -> None:
    async with running_worker(harness.settings):
        await harness.bus.publish(room_channel("lobby"), "message", {"message": "hi"}, sender="x")

        async def stored() -> list[Any]:
            return await _stored(harness)

        [row] = await eventually(stored, what="the message to be persisted by the cron job")
    assert row.data == {"message": "hi"}
