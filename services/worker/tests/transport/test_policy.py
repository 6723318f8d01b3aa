"""The job policy: retries with growing backoff, timeouts, dead letters, and their metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from arq.worker import Retry
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from chorus_common.database import create_sessionmaker
from chorus_devstack.servers import RunningPostgres
from chorus_schema.migrate import upgrade
from chorus_schema.models import FailedJob
from chorus_worker.deps import resources
from chorus_worker.domain.errors import PermanentJobError, TemporaryJobError
from chorus_worker.main import WorkerSettings
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport.policy import (
    JobSpec,
    backoff_delay,
    describe,
    pending_dead_letter_key,
)
from chorus_worker.transport.queue import create_queue_redis
from chorus_worker.transport.worker import ChorusWorker

from ..harness import Harness, dead_lettered, ended_cleanly, eventually, metric

CALLS: Counter[str] = Counter()


async def flaky(ctx: dict[str, Any], key: str, failures: int) -> str:
    """Fails ``failures`` times (temporarily), then succeeds."""
    CALLS[key] += 1
    if CALLS[key] <= failures:
        msg = f"failure {CALLS[key]}"
        raise TemporaryJobError(msg)
    return f"done after {CALLS[key]}"


async def unexpected(ctx: dict[str, Any], key: str) -> None:
    """A bug: an exception nobody planned for."""
    CALLS[key] += 1
    msg = "a bug"
    raise ZeroDivisionError(msg)


async def permanent(ctx: dict[str, Any], key: str) -> None:
    """Can never work."""
    CALLS[key] += 1
    msg = "bad arguments"
    raise PermanentJobError(msg)


async def slow(ctx: dict[str, Any], key: str) -> None:
    """Outlives its timeout."""
    CALLS[key] += 1
    await asyncio.sleep(30)


async def refused(ctx: dict[str, Any], key: str) -> None:
    """Sends Postgres a value it refuses (a data exception: the same every time)."""
    CALLS[key] += 1
    async with resources(ctx).sessions() as session:
        await session.execute(text("SELECT CAST('not a number' AS integer)"))


async def asks_for_retry(ctx: dict[str, Any], key: str) -> None:
    """Picks its own delay with arq's Retry."""
    CALLS[key] += 1
    raise Retry(defer=0.01)


def _specs(max_tries: int) -> list[JobSpec]:
    return [
        JobSpec(flaky, max_tries=max_tries, timeout=5),
        JobSpec(unexpected, max_tries=max_tries, timeout=5),
        JobSpec(permanent, max_tries=max_tries, timeout=5),
        JobSpec(slow, max_tries=max_tries, timeout=0.2),
        JobSpec(asks_for_retry, max_tries=max_tries, timeout=5),
        JobSpec(refused, max_tries=max_tries, timeout=5),
    ]


@contextlib.asynccontextmanager
async def policy_worker(
    settings: WorkerServiceSettings, *, max_tries: int = 3
) -> AsyncIterator[ChorusWorker]:
    """A worker running only this module's jobs, under the real policy."""
    declared = replace(WorkerSettings.from_settings(settings, jobs=_specs(max_tries)), cron_jobs=())
    worker = ChorusWorker(
        settings, redis_pool=create_queue_redis(settings), **declared.worker_arguments()
    )
    task = asyncio.create_task(worker.async_run())
    await eventually(lambda: _alive(worker, task), what="the worker")
    try:
        yield worker
    finally:
        await worker.drain(0)
        await worker.close()
        await ended_cleanly(task)


async def _alive(worker: ChorusWorker, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return worker.loop_alive() and "chorus_resources" in worker.ctx


async def _dead_letters(harness: Harness) -> list[FailedJob]:
    async with harness.sessions() as session:
        return list((await session.scalars(select(FailedJob).order_by(FailedJob.id))).all())


def test_backoff_doubles_up_to_the_cap_and_jitter_never_reorders_delays() -> None:
    def delays(rng: float) -> list[float]:
        return [
            backoff_delay(n, base=1.0, cap=30.0, jitter=0.25, rng=lambda: rng) for n in range(1, 8)
        ]

    assert delays(0.0) == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert delays(1.0) == [0.75, 1.5, 3.0, 6.0, 12.0, 22.5, 22.5]
    longest, shortest = delays(0.0), delays(0.999)
    for n in range(4):  # below the cap, even the unluckiest draw waits longer than before
        assert shortest[n + 1] > longest[n]


def test_describe_says_what_and_where() -> None:
    try:
        msg = "boom"
        raise ValueError(msg)
    except ValueError as exc:
        text = describe(exc)
    assert text.startswith("ValueError: boom\n")
    assert "test_describe_says_what_and_where" in text


async def test_temporary_failures_retry_then_succeed(harness: Harness) -> None:
    before = {
        name: metric(f"chorus_worker_jobs_{name}_total", function="flaky")
        for name in ("started", "retried", "succeeded", "failed")
    }
    lags = metric("chorus_worker_job_lag_seconds_count", function="flaky")
    async with policy_worker(harness.settings):
        job = await harness.enqueue("flaky", "t1", 2)
        assert await harness.outcome(job) == "done after 3"
    assert CALLS["t1"] == 3
    after = {
        name: metric(f"chorus_worker_jobs_{name}_total", function="flaky")
        for name in ("started", "retried", "succeeded", "failed")
    }
    assert {k: after[k] - before[k] for k in after} == {
        "started": 3,
        "retried": 2,
        "succeeded": 1,
        "failed": 0,
    }
    assert metric("chorus_worker_job_lag_seconds_count", function="flaky") == lags + 3
    assert await _dead_letters(harness) == []


@pytest.mark.parametrize(
    ("function", "tries", "error"),
    [
        ("unexpected", 3, "ZeroDivisionError: a bug"),
        ("permanent", 1, "PermanentJobError: bad arguments"),
        ("slow", 3, "TimeoutError"),
        ("asks_for_retry", 3, "RuntimeError: gave up after 3 tries"),
        ("refused", 1, "DBAPIError: (sqlalchemy.dialects.postgresql.asyncpg.Error) invalid input"),
    ],
)
async def test_failures_end_as_one_dead_letter(
    harness: Harness, function: str, tries: int, error: str
) -> None:
    key = f"dl-{function}"
    dead_before = metric("chorus_worker_dead_letters_total", function=function)
    async with policy_worker(harness.settings, max_tries=3):
        job = await harness.enqueue(function, key, _job_id=f"job-{function}")
        outcome = await harness.outcome(job)
    assert dead_lettered(outcome)
    assert CALLS[key] == tries
    [dead] = await _dead_letters(harness)
    assert (dead.function, dead.job_id, dead.tries) == (function, f"job-{function}", tries)
    assert dead.args == {"args": [key], "kwargs": {}}
    assert dead.error.startswith(error)
    assert metric("chorus_worker_dead_letters_total", function=function) == dead_before + 1


async def test_a_job_whose_last_try_was_interrupted_is_dead_lettered_without_running(
    harness: Harness,
) -> None:
    async with policy_worker(harness.settings, max_tries=3):
        # Delivered for the 4th time: try 3 started and never finished (a killed worker).
        job = await harness.enqueue("flaky", "lost", 0, _job_try=4)
        assert dead_lettered(await harness.outcome(job))
    assert CALLS["lost"] == 0
    [dead] = await _dead_letters(harness)
    assert dead.tries == 3
    assert dead.error.startswith("interrupted: try 3 of 3 never finished")


async def test_a_parked_verdict_is_written_without_running_the_job_again(
    harness: Harness,
) -> None:
    parked = orjson.dumps({"error": "PermanentJobError: from before", "tries": 1})
    await harness.queue.set(pending_dead_letter_key("parked-job"), parked)
    async with policy_worker(harness.settings):
        job = await harness.enqueue("flaky", "parked", 0, _job_id="parked-job", _job_try=2)
        assert dead_lettered(await harness.outcome(job))
    assert CALLS["parked"] == 0
    [dead] = await _dead_letters(harness)
    assert (dead.error, dead.tries) == ("PermanentJobError: from before", 1)
    assert await harness.queue.exists(pending_dead_letter_key("parked-job")) == 0


@pytest.mark.slow
async def test_a_dead_letter_postgres_refused_is_written_once_it_is_back(
    harness: Harness, private_postgres: RunningPostgres
) -> None:
    url = private_postgres.create_database("chorus_dl")
    upgrade(url)
    settings = harness.settings.model_copy(update={"database_url": url, "db_pool_pre_ping": True})
    async with policy_worker(settings):
        private_postgres.stop()
        job = await harness.enqueue("permanent", "db-down", _job_id="db-down")
        key = pending_dead_letter_key("db-down")
        await eventually(lambda: harness.queue.exists(key), what="the verdict parked in Redis")
        private_postgres.start()
        assert dead_lettered(await harness.outcome(job, timeout=30))
    assert CALLS["db-down"] == 1  # the job ran once; later deliveries only wrote its letter
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            [dead] = (await session.scalars(select(FailedJob))).all()
    finally:
        await engine.dispose()
    assert (dead.job_id, dead.tries) == ("db-down", 1)
    assert dead.error.startswith("PermanentJobError: bad arguments")
