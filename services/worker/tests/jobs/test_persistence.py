"""persist_messages: room history into Postgres, each entry once, whatever crashes when."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from chorus_common.events import room_channel, stream_key
from chorus_schema.models import RoomMessage, User
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


async def test_an_unreadable_entry_is_skipped(harness: Harness, ctx: JobContext) -> None:
    key = stream_key(room_channel("lobby"))
    await harness.queue.xadd(key, {"e": b"not json"})
    await harness.bus.publish(room_channel("lobby"), "message", {"message": "ok"}, sender="x")
    assert (await persist_messages(ctx))["persisted"] == 1


async def test_the_worker_runs_it_every_second(harness: Harness) -> None:
    async with running_worker(harness.settings):
        await harness.bus.publish(room_channel("lobby"), "message", {"message": "hi"}, sender="x")

        async def stored() -> list[Any]:
            return await _stored(harness)

        [row] = await eventually(stored, what="the message to be persisted by the cron job")
    assert row.data == {"message": "hi"}
