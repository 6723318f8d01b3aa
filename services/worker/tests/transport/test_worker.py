"""ChorusWorker: woken by keyspace events (or polling without them), heartbeat, drain."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from arq.jobs import JobStatus
from prometheus_client import REGISTRY
from sqlalchemy import select

from chorus_devstack.servers import RunningMockOpenAI, RunningRedis
from chorus_schema.models import FailedJob
from chorus_worker.domain.dead_letters import ReplayRefusedError, replay
from chorus_worker.main import create_worker, job_specs
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport import worker as worker_module
from chorus_worker.transport.policy import JobSpec
from chorus_worker.transport.queue import create_queue_redis
from chorus_worker.transport.worker import ChorusWorker

from ..harness import Harness, ended_cleanly, eventually, metric, running_worker

GATES: dict[str, asyncio.Event] = {}
STARTED: list[str] = []


async def gated(ctx: dict[str, Any], name: str) -> str:
    """Runs until the test opens its gate."""
    STARTED.append(name)
    gate = GATES.setdefault(name, asyncio.Event())
    await gate.wait()
    return name


@contextlib.asynccontextmanager
async def gated_worker(settings: WorkerServiceSettings) -> AsyncIterator[ChorusWorker]:
    """A worker with the real jobs plus ``gated``."""
    worker = create_worker(
        settings, jobs=[*job_specs(settings), JobSpec(gated, max_tries=3, timeout=30)]
    )
    task = asyncio.create_task(worker.async_run())

    async def alive() -> bool:
        if task.done():
            task.result()
        return worker.loop_alive()

    await eventually(alive, what="the worker")
    try:
        yield worker
    finally:
        for gate in GATES.values():
            gate.set()
        await worker.drain(5)
        await worker.close()
        await ended_cleanly(task)


async def never_enqueued(ctx: dict[str, Any]) -> None:
    """A job no test runs: its series can only come from the worker declaring them."""


async def test_every_function_exports_its_series_at_zero_from_the_start(harness: Harness) -> None:
    # rate()/increase() miss a counter's first increment when the series is born at 1:
    # the first dead letter after a restart would not fire ChorusWorkerDeadLetters.
    worker = create_worker(harness.settings, jobs=[JobSpec(never_enqueued, max_tries=1, timeout=5)])
    await worker.pool.aclose()
    for name in (
        "chorus_worker_jobs_started_total",
        "chorus_worker_jobs_succeeded_total",
        "chorus_worker_jobs_retried_total",
        "chorus_worker_jobs_failed_total",
        "chorus_worker_dead_letters_total",
        "chorus_worker_job_duration_seconds_count",
        "chorus_worker_job_lag_seconds_count",
    ):
        for function in ("never_enqueued", "persist_messages"):
            assert REGISTRY.get_sample_value(name, {"function": function}) is not None, name
    assert (
        REGISTRY.get_sample_value(
            "chorus_worker_dead_letters_total", {"function": "never_enqueued"}
        )
        == 0.0
    )


async def test_keyspace_events_are_enabled_and_wake_the_loop(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.queue.config_set("notify-keyspace-events", "")
    # Between wake-ups the loop would poll only once a minute: within this test, a job can
    # only start because its enqueue woke the loop.
    monkeypatch.setattr(worker_module, "SAFETY_POLL_SECONDS", 60.0)
    settings = harness.settings.model_copy(update={"poll_delay": 60.0})
    async with running_worker(settings) as worker:
        assert worker.wakeup is not None
        await eventually(lambda: _true(worker.wakeup is not None and worker.wakeup.active))
        flags = (await harness.queue.config_get("notify-keyspace-events"))["notify-keyspace-events"]
        assert "K" in flags
        assert "z" in flags
        # The first job may meet a poll already under way; once it is done, the loop sleeps.
        first = await harness.enqueue("noop")
        assert await harness.outcome(first) is None
        for _ in range(3):
            job = await harness.enqueue("noop")
            assert await harness.outcome(job, timeout=15) is None


async def test_an_entry_that_is_no_job_id_is_removed_and_the_loop_goes_on(
    harness: Harness,
) -> None:
    # Anything with access to Redis can write into the queue; bytes that are not even a job
    # id used to end the loop, and the restarted process met them again at once.
    queue = harness.settings.arq_queue_name
    poison = b"\xff\xfe not utf-8"
    before = REGISTRY.get_sample_value("chorus_worker_unreadable_jobs_total") or 0.0
    async with running_worker(harness.settings) as worker:
        await harness.queue.zadd(queue, {poison: 0})
        job = await harness.enqueue("noop")
        assert await harness.outcome(job) is None
        assert await harness.queue.zscore(queue, poison) is None
        assert worker.loop_alive()
    assert REGISTRY.get_sample_value("chorus_worker_unreadable_jobs_total") == before + 1


async def test_without_keyspace_events_the_worker_polls(harness: Harness) -> None:
    await harness.queue.config_set("notify-keyspace-events", "")
    settings = harness.settings.model_copy(update={"redis_enable_keyspace_events": False})
    async with running_worker(settings) as worker:
        job = await harness.enqueue("noop")
        assert await harness.outcome(job) is None
        assert worker.wakeup is not None
        assert not worker.wakeup.active
        assert (await harness.queue.config_get("notify-keyspace-events"))[
            "notify-keyspace-events"
        ] == ""
    await harness.queue.config_set("notify-keyspace-events", "Kz")


async def test_poll_mode_runs_jobs(harness: Harness) -> None:
    settings = harness.settings.model_copy(update={"queue_wakeup": "poll"})
    async with running_worker(settings) as worker:
        assert worker.wakeup is None
        job = await harness.enqueue("noop")
        assert await harness.outcome(job) is None


async def test_a_deferred_job_runs_when_due(harness: Harness) -> None:
    async with running_worker(harness.settings):
        job = await harness.enqueue("noop", _defer_by=0.3)
        assert await harness.status(job.job_id) is JobStatus.deferred
        assert await harness.outcome(job) is None


async def test_drain_finishes_running_jobs_and_starts_no_new_one(harness: Harness) -> None:
    STARTED.clear()
    async with gated_worker(harness.settings) as worker:
        first = await harness.enqueue("gated", "first")
        await eventually(lambda: _true("first" in STARTED), what="the first job to start")
        draining = asyncio.create_task(worker.drain(10))
        await eventually(lambda: _true(not worker.allow_pick_jobs), what="the drain to begin")
        second = await harness.enqueue("gated", "second")
        assert not draining.done()
        GATES["first"].set()
        await draining
        assert await harness.outcome(first) == "first"
        assert "second" not in STARTED
        assert await harness.status(second.job_id) is JobStatus.queued


async def test_drain_cancels_what_outlives_the_wait_and_arq_requeues_it(harness: Harness) -> None:
    STARTED.clear()
    GATES.pop("stuck", None)
    async with gated_worker(harness.settings) as worker:
        job = await harness.enqueue("gated", "stuck")
        await eventually(lambda: _true("stuck" in STARTED), what="the job to start")
        await worker.drain(0.1)
        assert worker.running_jobs() == 0
        # Back in the queue, unclaimed: the next worker runs it.
        assert await harness.status(job.job_id) is JobStatus.queued
        assert not await harness.queue.exists(f"arq:in-progress:{job.job_id}")


async def test_the_heartbeat_goes_stale_when_the_loop_stops(harness: Harness) -> None:
    async with running_worker(harness.settings) as worker:
        await worker.check_loop()
        assert worker.loop_alive()
        worker.last_beat -= harness.settings.heartbeat_timeout + 1  # as if stuck that long
        assert not worker.loop_alive()
        with pytest.raises(RuntimeError, match="silent"):
            await worker.check_loop()
    assert not worker.loop_alive()
    with pytest.raises(RuntimeError, match="not running"):
        await worker.check_loop()


@pytest.mark.slow
async def test_the_loop_survives_a_redis_restart(
    harness: Harness, private_redis: RunningRedis
) -> None:
    settings = harness.settings.model_copy(update={"redis_url": private_redis.url})
    queue = create_queue_redis(settings)
    try:
        async with running_worker(settings) as worker:
            private_redis.stop()
            await eventually(lambda: _true(worker.redis_failing), what="the loop to hit the outage")
            await eventually(lambda: _true(worker.last_beat > worker.loop.time() - 0.1))
            assert worker.loop_alive()  # still turning, waiting for Redis
            private_redis.start()
            job = await queue.enqueue_job("noop")
            assert job is not None
            info = await eventually(job.result_info, timeout=15, what="a job after the restart")
            assert info.success
    finally:
        await queue.aclose()


async def _true(value: bool) -> bool:
    return value


class _TouchOnUnpickle:
    """A pickle whose loading creates a file: what unpickling a payload from Redis runs."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.path,))


async def test_a_pickled_payload_written_into_redis_is_never_run(
    harness: Harness, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Write access to Redis must not be code execution in the worker."""
    proof = tmp_path / "unpickled"
    job = {"t": 1, "f": "noop", "a": (_TouchOnUnpickle(proof),), "k": {}, "et": 1}
    await harness.queue.set(b"arq:job:evil", pickle.dumps(job), px=60_000)
    await harness.queue.zadd(harness.settings.arq_queue_name, {"evil": 1})
    refused = metric("chorus_worker_unreadable_jobs_total")
    async with running_worker(harness.settings):

        async def dead_letter() -> FailedJob | None:
            async with harness.sessions() as session:
                return await session.scalar(select(FailedJob).where(FailedJob.job_id == "evil"))

        dead = await eventually(dead_letter, what="the refused payload's dead letter")
    assert not proof.exists()
    assert dead.function == "unreadable_payload"
    assert "pickle" in dead.error
    assert dead.args["payload"].startswith("b'\\x80")
    assert metric("chorus_worker_unreadable_jobs_total") == refused + 1
    assert any("refused job evil without running it" in r.getMessage() for r in caplog.records)
    assert await harness.queue.zscore(harness.settings.arq_queue_name, "evil") is None
    with pytest.raises(ReplayRefusedError, match="nothing to run again"):
        await replay(harness.sessions, harness.queue, dead.id, queue_name="arq:queue")


async def test_a_flood_of_questions_leaves_slots_for_the_other_jobs(
    harness: Harness, mock_openai: RunningMockOpenAI
) -> None:
    """Answers that hang hold at most ASSISTANT_MAX_JOBS slots, and the jobs queued behind a
    page full of them (more than arq reads per poll) still start."""
    settings = harness.settings.model_copy(
        update={"max_jobs": 4, "assistant_max_jobs": 2, "assistant_idle_timeout": 60.0}
    )
    flood = 120
    for n in range(flood):
        await harness.enqueue(
            "answer_in_room",
            "lobby",
            f"1-{n}",
            "@assistant hi [mock fault=hang]",
            "7",
            _job_id=f"assistant:lobby:1-{n}",
        )
    async with running_worker(settings) as worker:
        assert worker.queue_read_limit < flood
        event = await harness.enqueue("record_analytics", "page.viewed", {})
        assert (await harness.outcome(event, timeout=20))["status"] == "recorded"
        running = [
            j for j, t in worker.tasks.items() if j.startswith("assistant:") and not t.done()
        ]
        assert len(running) == 2
        waiting = await harness.queue.zcard(settings.arq_queue_name)
        assert waiting >= flood  # the others are still queued, not lost
