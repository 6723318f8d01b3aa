"""prune_room_messages: history older than the retention period goes, in batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from chorus_schema.models import RoomMessage
from chorus_worker.jobs.retention import prune_room_messages
from chorus_worker.resources import Resources

from ..harness import Harness, metric


async def _messages(harness: Harness, ages_in_days: list[float]) -> None:
    now = datetime.now(UTC)
    async with harness.sessions.begin() as session:
        session.add_all(
            RoomMessage(
                room="lobby",
                stream_ms=n,
                stream_seq=0,
                type="message",
                sender="x",
                data={"message": f"{age}"},
                created_at=now - timedelta(days=age),
            )
            for n, age in enumerate(ages_in_days)
        )


async def _ages(harness: Harness) -> list[str]:
    async with harness.sessions() as session:
        rows = (await session.scalars(select(RoomMessage).order_by(RoomMessage.id))).all()
    return [row.data["message"] for row in rows]


async def test_messages_older_than_the_retention_period_are_deleted_in_batches(
    harness: Harness,
) -> None:
    await _messages(harness, [40, 31, 0.5, 35, 29, 60, 0])
    settings = harness.settings.model_copy(
        update={"room_messages_retention_days": 30, "retention_batch": 2}
    )
    resources = Resources.open(settings, harness.queue)
    pruned = metric("chorus_worker_room_messages_pruned_total")
    try:
        result = await prune_room_messages(harness.job_context(resources))
        assert result["deleted"] == 4
        assert await _ages(harness) == ["0.5", "29", "0"]
        assert metric("chorus_worker_room_messages_pruned_total") == pruned + 4
        assert (await prune_room_messages(harness.job_context(resources)))["deleted"] == 0
    finally:
        await resources.close()


async def test_a_run_stops_after_its_batches_and_the_next_goes_on(harness: Harness) -> None:
    await _messages(harness, [100] * 7)
    settings = harness.settings.model_copy(
        update={
            "room_messages_retention_days": 30,
            "retention_batch": 2,
            "retention_max_batches": 2,
        }
    )
    resources = Resources.open(settings, harness.queue)
    try:
        assert (await prune_room_messages(harness.job_context(resources)))["deleted"] == 4
        assert len(await _ages(harness)) == 3
        assert (await prune_room_messages(harness.job_context(resources)))["deleted"] == 3
    finally:
        await resources.close()


async def test_zero_keeps_history_forever(harness: Harness) -> None:
    await _messages(harness, [400, 4000])
    settings = harness.settings.model_copy(update={"room_messages_retention_days": 0})
    resources = Resources.open(settings, harness.queue)
    try:
        result = await prune_room_messages(harness.job_context(resources))
    finally:
        await resources.close()
    assert result == {"status": "disabled", "deleted": 0}
    assert len(await _ages(harness)) == 2
