"""record_analytics: each event counted once, in the day it happened."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from chorus_schema.models import AnalyticsDaily, AnalyticsEvent, FailedJob

from ..harness import Harness, dead_lettered, metric, running_worker


async def _daily(harness: Harness) -> dict[str, int]:
    async with harness.sessions() as session:
        rows = (await session.scalars(select(AnalyticsDaily))).all()
    return {row.event: row.count for row in rows}


async def test_events_are_recorded_and_rolled_up_by_day(harness: Harness) -> None:
    async with running_worker(harness.settings):
        jobs = [
            await harness.enqueue("record_analytics", "user.registered", {"plan": "free"}),
            await harness.enqueue("record_analytics", "user.registered", {"plan": "pro"}),
            await harness.enqueue("record_analytics", "order.created", {}),
            await harness.enqueue("record_analytics", "order.created"),  # properties optional
        ]
        results = [await harness.outcome(job) for job in jobs]
    today = datetime.now(UTC).date().isoformat()
    assert results == [{"status": "recorded", "day": today}] * 4
    assert await _daily(harness) == {"user.registered": 2, "order.created": 2}
    async with harness.sessions() as session:
        stored = (
            await session.scalars(select(AnalyticsEvent).order_by(AnalyticsEvent.occurred_at))
        ).all()
    assert sorted(e.id for e in stored) == sorted(job.job_id for job in jobs)
    # By job id, not by occurred_at: that is arq's enqueue time, in milliseconds, and two
    # enqueues in the same millisecond tie (which made this test order-dependent).
    properties = {e.id: e.properties for e in stored}
    assert properties[jobs[0].job_id] == {"plan": "free"}
    assert properties[jobs[1].job_id] == {"plan": "pro"}


async def test_a_redelivered_job_counts_once(harness: Harness) -> None:
    # keep_result 0: arq forgets a finished job, so the same job id can arrive again —
    # which is what a redelivery after a lost acknowledgement looks like to the job.
    settings = harness.settings.model_copy(update={"keep_result": 0})
    succeeded = metric("chorus_worker_jobs_succeeded_total", function="record_analytics")
    async with running_worker(settings):
        for _ in range(3):
            job = await harness.enqueue("record_analytics", "page.viewed", {}, _job_id="evt-1")
            await harness.gone(job)
    assert metric("chorus_worker_jobs_succeeded_total", function="record_analytics") == (
        succeeded + 3
    )
    assert await _daily(harness) == {"page.viewed": 1}
    async with harness.sessions() as session:
        assert len((await session.scalars(select(AnalyticsEvent))).all()) == 1


async def test_bad_events_become_dead_letters(harness: Harness) -> None:
    async with running_worker(harness.settings):
        jobs = [
            await harness.enqueue("record_analytics", "has spaces", {}, _job_id="bad-name"),
            await harness.enqueue("record_analytics", "ok", ["a", "list"], _job_id="bad-props"),
            await harness.enqueue("record_analytics", "ok", {"blob": "x" * 20_000}, _job_id="big"),
        ]
        for job in jobs:
            assert dead_lettered(await harness.outcome(job))
    async with harness.sessions() as session:
        dead = {d.job_id: d for d in (await session.scalars(select(FailedJob))).all()}
    assert {d.tries for d in dead.values()} == {1}
    assert "event must be" in dead["bad-name"].error
    assert "properties must be an object" in dead["bad-props"].error
    assert "the limit is" in dead["big"].error
    assert await _daily(harness) == {}


async def test_text_postgres_cannot_store_is_a_dead_letter_at_once(harness: Harness) -> None:
    """One poisoned event is set aside on its first try; the others are counted."""
    retried = metric("chorus_worker_jobs_retried_total", function="record_analytics")
    async with running_worker(harness.settings):
        poisoned = await harness.enqueue(
            "record_analytics", "page.viewed", {"path": "/a\x00b"}, _job_id="nul"
        )
        fine = await harness.enqueue("record_analytics", "page.viewed", {"path": "/"})
        assert dead_lettered(await harness.outcome(poisoned))
        assert (await harness.outcome(fine))["status"] == "recorded"
    assert metric("chorus_worker_jobs_retried_total", function="record_analytics") == retried
    async with harness.sessions() as session:
        [dead] = (await session.scalars(select(FailedJob))).all()
    assert (dead.job_id, dead.tries) == ("nul", 1)
    assert "properties.path contains a NUL character" in dead.error
    # The dead letter keeps the arguments, the NUL spelled out so Postgres takes the row.
    assert dead.args == {"args": ["page.viewed", {"path": "/a\\x00b"}], "kwargs": {}}
    assert await _daily(harness) == {"page.viewed": 1}
