"""The worker process: its HTTP port (liveness, readiness that includes the job loop,
metrics) and its lifecycle when the job loop dies."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from chorus_devstack.ports import free_port
from chorus_devstack.testing import base_url, serve_app
from chorus_worker.main import create_app, serve
from chorus_worker.resources import JobContext
from chorus_worker.transport.policy import JobSpec

from .harness import Harness, eventually, jobs_with_noop, running_worker

CONTRACT_METRICS = (
    "chorus_worker_jobs_started_total",
    "chorus_worker_jobs_succeeded_total",
    "chorus_worker_jobs_retried_total",
    "chorus_worker_jobs_failed_total",
    "chorus_worker_job_duration_seconds",
    "chorus_worker_job_lag_seconds",
    "chorus_worker_queue_depth",
    "chorus_worker_dead_letters_total",
    "chorus_worker_emails_sent_total",
    "chorus_ready",
    "chorus_dependency_up",
    "chorus_http_requests_total",
)


async def test_ready_while_the_loop_turns_and_not_when_it_dies_or_drains(
    harness: Harness,
) -> None:
    async with running_worker(harness.settings) as worker:
        job = await harness.enqueue("noop")
        await harness.outcome(job)
        app = create_app(harness.settings, worker=worker)
        async with serve_app(app) as server, httpx.AsyncClient(base_url=base_url(server)) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert ready.status_code == 200
            assert set(ready.json()["checks"]) == {"redis", "postgres", "job_loop"}

            metrics = (await client.get("/metrics")).text
            for name in CONTRACT_METRICS:
                assert name in metrics, name
            assert 'chorus_worker_jobs_succeeded_total{function="noop"}' in metrics

            # The loop dies (a stalled one is covered in test_worker: the loop itself would
            # refresh a faked heartbeat here before the request is served).
            assert worker.main_task is not None
            worker.main_task.cancel()
            await asyncio.wait([worker.main_task])
            assert worker.main_task.cancelled()
            dead = await client.get("/readyz")
            assert dead.status_code == 503
            assert dead.json()["checks"]["job_loop"]["ok"] is False
            assert "not running" in dead.json()["error"]["message"]

            await app.state.lifecycle.drain(0)
            draining = await client.get("/readyz")
            assert draining.status_code == 503
            assert "draining" in draining.json()["checks"]


async def test_unreachable_postgres_is_not_ready(harness: Harness) -> None:
    settings = harness.settings.model_copy(
        update={
            "database_url": "postgresql+asyncpg://nobody@127.0.0.1:1/none",
            "db_connect_timeout": 1,
        }
    )
    async with (
        serve_app(create_app(settings)) as server,
        httpx.AsyncClient(base_url=base_url(server)) as client,
    ):
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"]["ok"] is False
    assert ready.json()["checks"]["redis"]["ok"] is True


class LoopKiller(BaseException):
    """What no job should raise: it passes every ``except Exception``, arq's own included."""


async def escapes(ctx: JobContext) -> None:
    """A job that lets a BaseException out: arq's loop re-raises it when it reaps the job."""
    msg = "a job let a BaseException out"
    raise LoopKiller(msg)


async def test_the_process_exits_1_when_its_job_loop_dies(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    # serve() is what `python -m chorus_worker` runs and exits with; its loop dies for real.
    port = free_port()
    settings = harness.settings.model_copy(update={"host": "127.0.0.1", "port": port})
    jobs = [*jobs_with_noop(settings), JobSpec(escapes, max_tries=1, timeout=5)]
    serving = asyncio.create_task(serve(settings, jobs=jobs))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

        async def ready() -> bool:
            if serving.done():
                serving.result()
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout=30, what="the worker to be ready")
        await harness.enqueue("escapes")
        status = await asyncio.wait_for(serving, 30)
    assert status == 1
    assert any(
        "jobs ended on its own: LoopKiller" in record.getMessage() for record in caplog.records
    )
