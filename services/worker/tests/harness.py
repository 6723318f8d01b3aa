"""What the worker's tests share: settings, a stand-in for the api's enqueues, waiting helpers.

Everything here talks to the real servers of the test session (Redis, Postgres, the SMTP
sink, the mock OpenAI upstream). Imported by the tests (``from .harness import ...``);
fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chorus_common.events import EventBus, room_channel, stream_key
from chorus_common.queue import deserialize_job
from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_schema.models import User
from chorus_worker.main import create_worker, job_specs
from chorus_worker.resources import RESOURCES_KEY, SETTINGS_KEY, JobContext, Resources
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport.policy import JobSpec
from chorus_worker.transport.worker import ChorusWorker

TEST_SECRET = "a-test-secret-that-is-long-enough-for-hs256-keys"

T = TypeVar("T")


async def noop(ctx: JobContext) -> None:
    """A job that does nothing: the tests' unit of work for the queue and the loop."""


def jobs_with_noop(settings: WorkerServiceSettings) -> list[JobSpec]:
    """The worker's jobs plus :func:`noop`."""
    return [
        *job_specs(settings),
        JobSpec(noop, max_tries=settings.max_tries, timeout=settings.job_timeout),
    ]


def make_settings(**values: Any) -> WorkerServiceSettings:
    """Settings as a test worker gets them (no environment read for these fields)."""
    base: dict[str, Any] = {
        "env": "test",
        "jwt_secret": TEST_SECRET,
        "log_level": "INFO",
        "retry_backoff_base": 0.05,
        "retry_backoff_max": 1.0,
        "job_completion_wait": 5,
        "assistant_model": "mock-gpt",
        "llm_gateway_api_key": "sk-test",
        "assistant_idle_timeout": 5.0,
        "assistant_timeout": 10.0,
    }
    base.update(values)
    return WorkerServiceSettings(**base)


def dead_lettered(outcome: object) -> bool:
    """True for the result arq keeps of a job that ended as a dead letter.

    Results are JSON (``chorus_common.queue``): an exception is kept as its type and message.
    """
    return (
        isinstance(outcome, dict)
        and isinstance(outcome.get("error"), dict)
        and outcome["error"].get("type") == "DeadLetteredError"
    )


def metric(name: str, **labels: str) -> float:
    """A sample's current value (0 if never set)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            raise AssertionError(msg)
        await asyncio.sleep(0.02)


@dataclass
class Harness:
    """One test's view of the system: its settings, the queue, the database, the bus."""

    settings: WorkerServiceSettings
    queue: ArqRedis
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus

    async def register_user(self, email: str, full_name: str) -> User:
        """Register a user exactly as the api does: commit the row, then enqueue the mail."""
        async with self.sessions.begin() as session:
            user = User(email=email.lower(), full_name=full_name, password_hash="x" * 60)
            session.add(user)
        await self.queue.enqueue_job("send_welcome_email", user.id, _job_id=f"welcome:{user.id}")
        return user

    async def enqueue(self, function: str, *args: Any, **kwargs: Any) -> Job:
        """Enqueue a job as any Chorus service does (plain arq)."""
        job = await self.queue.enqueue_job(function, *args, **kwargs)
        assert job is not None, "a job with this id exists already"
        return job

    def job(self, job_id: str) -> Job:
        """A handle on job ``job_id`` (e.g. ``welcome:<user id>``)."""
        return Job(job_id, self.queue, _deserializer=deserialize_job)

    async def outcome(self, job: Job, timeout: float = 15.0) -> Any:
        """Wait for ``job`` to finish; its result, or the exception it ended with (as JSON)."""
        info = await eventually(job.result_info, timeout=timeout, what=f"job {job.job_id}")
        return info.result

    async def gone(self, job: Job, timeout: float = 15.0) -> None:
        """Wait until arq has finished ``job`` and kept nothing of it (``KEEP_RESULT=0``)."""

        async def finished() -> bool:
            return await job.status() is JobStatus.not_found

        await eventually(finished, timeout=timeout, what=f"job {job.job_id} to finish")

    async def status(self, job_id: str) -> JobStatus:
        """arq's view of a job."""
        return await Job(job_id, self.queue, _deserializer=deserialize_job).status()

    async def user(self, user_id: int) -> User:
        """The user row as it is now."""
        async with self.sessions() as session:
            found = await session.scalar(select(User).where(User.id == user_id))
        assert found is not None
        return found

    async def room_events(self, room: str) -> list[dict[str, Any]]:
        """Every event in a room's stream, oldest first."""
        entries = await self.queue.xrange(stream_key(room_channel(room)))
        return [
            {"id": entry_id.decode(), **orjson.loads(fields[b"e"])} for entry_id, fields in entries
        ]

    def job_context(self, resources: Resources, *, job_id: str = "test-job") -> JobContext:
        """The ``ctx`` arq would pass a job, for calling one directly."""
        now = datetime.now(UTC)
        return {
            SETTINGS_KEY: self.settings,
            RESOURCES_KEY: resources,
            "redis": self.queue,
            "job_id": job_id,
            "job_try": 1,
            "enqueue_time": now,
            "score": int(now.timestamp() * 1000),
        }


@contextlib.asynccontextmanager
async def running_worker(settings: WorkerServiceSettings) -> AsyncIterator[ChorusWorker]:
    """A worker running in this event loop, with :func:`noop` (its HTTP side is tested
    separately)."""
    worker = create_worker(settings, jobs=jobs_with_noop(settings))
    task = asyncio.create_task(worker.async_run())

    async def started() -> bool:
        if task.done():
            task.result()
        return worker.loop_alive() and RESOURCES_KEY in worker.ctx

    await eventually(started, what="the worker to start")
    try:
        yield worker
    finally:
        await worker.drain(0)
        await worker.close()
        await ended_cleanly(task)


async def ended_cleanly(task: asyncio.Task[Any]) -> None:
    """Wait for a worker's run to end; raise what ended it, unless that was our close().

    A job loop that crashed during the test must fail it, not vanish in the teardown.
    """
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


class WorkerProcess:
    """``python -m chorus_worker`` as a real child process, on its own HTTP port."""

    def __init__(self, harness: Harness, log_dir: Path, **env: str) -> None:
        settings = harness.settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        variables = {
            "ENV": "test",
            "JWT_SECRET": TEST_SECRET,
            "LOG_FORMAT": "console",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "SMTP_HOST": settings.smtp_host,
            "SMTP_PORT": str(settings.smtp_port),
            "LLM_GATEWAY_URL": settings.llm_gateway_url,
            "LLM_GATEWAY_API_KEY": "sk-test",
            "ASSISTANT_MODEL": "mock-gpt",
            "RETRY_BACKOFF_BASE": "0.05",
            # Short timeouts: a job claimed by a killed worker is free again after the
            # longest job timeout plus 5 s.
            "JOB_TIMEOUT": "3",
            "ASSISTANT_TIMEOUT": "1",
            "JOB_COMPLETION_WAIT": "20",
            **env,
        }
        spec = ProcessSpec(
            name=f"worker-{self.port}",
            argv=[sys.executable, "-m", "chorus_worker"],
            env=variables,
            ready_url=f"{self.url}/readyz",
            stop_timeout=30,
        )
        self.process = ManagedProcess(spec, log_dir)

    def start(self) -> WorkerProcess:
        """Start and wait until ready."""
        self.process.start()
        self.process.wait_ready(30)
        return self

    async def exit_status(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit on its own; its exit status."""

        async def exited() -> bool:
            return not self.process.running()

        await eventually(exited, timeout=timeout, what="the worker process to exit")
        status = self.process.returncode()
        assert status is not None
        return status

    async def ready_status(self) -> int:
        """``GET /readyz``'s status code."""
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.url}/readyz")).status_code

    def log(self) -> str:
        """The process's output so far."""
        return self.process.tail(200)
