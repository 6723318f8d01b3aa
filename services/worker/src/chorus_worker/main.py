"""The worker process: what it runs (:class:`WorkerSettings`), its HTTP side, its lifecycle.

**What runs.** :class:`WorkerSettings` is arq's ``WorkerSettings`` for Chorus, declared in
one place: the jobs enqueuers may call (:func:`job_specs`; the names are the contract,
``README.md`` lists their arguments), the cron jobs (:func:`cron_specs`), each wrapped in
the job policy, and the loop's knobs from :class:`WorkerServiceSettings`. Its attributes
are named as ``arq.worker.Worker``'s arguments, so arq's own ``create_worker`` accepts it;
:func:`create_worker` builds the :class:`ChorusWorker` the process runs with it.

**The HTTP side** (:func:`create_app`): ``/healthz``, ``/readyz`` and ``/metrics`` on a
small port. ``/readyz`` answers 200 only while Redis and Postgres answer *and* the job loop
turns (its heartbeat is younger than ``HEARTBEAT_TIMEOUT``) — not arq's hourly health key,
which says nothing about the last hour. It answers 503 from the moment a drain begins.

**The lifecycle** (:func:`serve`). On the first SIGTERM (or SIGINT) the process:

1. turns not-ready (``/readyz`` 503) and stops taking jobs at once;
2. lets running jobs finish for up to ``JOB_COMPLETION_WAIT`` seconds, then cancels the
   rest (arq puts them back in the queue, so another worker runs them again);
3. closes its clients (``on_shutdown``) and the HTTP port, and exits 0.

A second signal cancels running jobs at once. If the job loop dies on its own, the
process exits 1 so Kubernetes restarts it. The chart sets the pod's grace period above
``JOB_COMPLETION_WAIT``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any

from arq.cron import CronJob
from arq.worker import Function
from fastapi import FastAPI

from chorus_common.app import create_service_app
from chorus_common.database import DatabaseCheck, create_engine
from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import RedisEndpoint, create_redis, redis_check
from chorus_common.server import DrainingServer, uvicorn_config
from chorus_worker import __version__
from chorus_worker.jobs.account_exists import send_account_exists_email
from chorus_worker.jobs.analytics import record_analytics
from chorus_worker.jobs.assistant import answer_in_room
from chorus_worker.jobs.persistence import persist_messages
from chorus_worker.jobs.retention import prune_room_messages
from chorus_worker.jobs.room_invitation import send_room_invitation_email
from chorus_worker.jobs.usage import record_llm_usage
from chorus_worker.jobs.welcome import send_welcome_email
from chorus_worker.resources import SETTINGS_KEY, JobContext, on_shutdown, on_startup
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport.policy import ARQ_TIMEOUT_MARGIN, JobSpec, arq_cron, arq_function
from chorus_worker.transport.queue import create_queue_redis
from chorus_worker.transport.worker import ChorusWorker

__all__ = [
    "WorkerSettings",
    "create_app",
    "create_worker",
    "cron_specs",
    "job_specs",
    "serve",
]

logger = logging.getLogger("chorus.worker.service")

#: arq's ``on_startup`` / ``on_shutdown``: called with the worker's ``ctx``.
Hook = Callable[[JobContext], Awaitable[None]]


def job_specs(settings: WorkerServiceSettings) -> list[JobSpec]:
    """The jobs enqueuers may call, and how each is run."""
    return [
        JobSpec(send_welcome_email, max_tries=settings.max_tries, timeout=settings.job_timeout),
        JobSpec(
            send_account_exists_email, max_tries=settings.max_tries, timeout=settings.job_timeout
        ),
        JobSpec(
            send_room_invitation_email, max_tries=settings.max_tries, timeout=settings.job_timeout
        ),
        JobSpec(record_analytics, max_tries=settings.max_tries, timeout=settings.job_timeout),
        JobSpec(record_llm_usage, max_tries=settings.max_tries, timeout=settings.job_timeout),
        # A retried answer starts over in front of the room: a few tries, not ten.
        JobSpec(
            answer_in_room,
            max_tries=min(3, settings.max_tries),
            timeout=settings.assistant_job_timeout,
        ),
    ]


def cron_specs(settings: WorkerServiceSettings) -> list[JobSpec]:
    """Jobs the worker schedules itself; a failed run is retried by the next one."""
    return [
        JobSpec(
            persist_messages,
            max_tries=1,
            timeout=settings.job_timeout,
            dead_letter=False,
            traced=False,
        ),
        JobSpec(
            prune_room_messages,
            max_tries=1,
            timeout=settings.job_timeout,
            dead_letter=False,
            traced=False,
        ),
    ]


def _schedule(spec: JobSpec, settings: WorkerServiceSettings) -> dict[str, int]:
    """When a cron job runs: ``persist_messages`` every ``PERSIST_INTERVAL`` seconds, the
    pruning of old history every ten minutes (each run deletes in bounded batches)."""
    if spec.function is prune_room_messages:
        return {"every_minutes": 10}
    return {"every": settings.persist_interval}


@dataclass(frozen=True)
class WorkerSettings:
    """arq's ``WorkerSettings`` for Chorus: attribute names are ``arq.worker.Worker``'s.

    Not slotted: arq's ``create_worker`` reads an instance's ``__dict__``.
    """

    functions: tuple[Function, ...]
    cron_jobs: tuple[CronJob, ...]
    queue_name: str
    max_jobs: int
    job_timeout: float
    keep_result: int
    max_tries: int
    poll_delay: float
    job_completion_wait: int
    ctx: dict[str, Any]
    on_startup: Hook = on_startup
    on_shutdown: Hook = on_shutdown
    #: The process (:func:`serve`) owns SIGTERM: it drains the HTTP side too.
    handle_signals: bool = False
    #: Jobs and results are JSON, never pickles (``chorus_common.queue``).
    job_serializer: Callable[[dict[str, Any]], bytes] = JOB_CODEC["job_serializer"]
    job_deserializer: Callable[[bytes], dict[str, Any]] = JOB_CODEC["job_deserializer"]

    @classmethod
    def from_settings(
        cls, settings: WorkerServiceSettings, *, jobs: Sequence[JobSpec] | None = None
    ) -> WorkerSettings:
        """What the worker runs with ``settings``; ``jobs`` replaces :func:`job_specs`."""
        return cls(
            functions=tuple(
                arq_function(spec, settings)
                for spec in (job_specs(settings) if jobs is None else jobs)
            ),
            cron_jobs=tuple(
                arq_cron(spec, settings, **_schedule(spec, settings))
                for spec in cron_specs(settings)
            ),
            queue_name=settings.arq_queue_name,
            max_jobs=settings.max_jobs,
            job_timeout=settings.job_timeout + ARQ_TIMEOUT_MARGIN,
            keep_result=settings.keep_result,
            max_tries=settings.max_tries,
            poll_delay=settings.poll_delay,
            job_completion_wait=settings.job_completion_wait,
            ctx={SETTINGS_KEY: settings},
        )

    def worker_arguments(self) -> dict[str, Any]:
        """The keyword arguments of ``arq.worker.Worker`` (what arq's ``get_kwargs`` reads)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def create_worker(
    settings: WorkerServiceSettings, *, jobs: Sequence[JobSpec] | None = None
) -> ChorusWorker:
    """The worker ``python -m chorus_worker`` runs; call inside the running event loop."""
    declared = WorkerSettings.from_settings(settings, jobs=jobs)
    return ChorusWorker(
        settings, redis_pool=create_queue_redis(settings), **declared.worker_arguments()
    )


def create_app(settings: WorkerServiceSettings, *, worker: ChorusWorker | None = None) -> FastAPI:
    """The health and metrics app served next to the job loop of ``worker``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Clients of their own: readiness must test the way there, not a busy pool.
        redis = create_redis(
            RedisEndpoint.from_settings(settings),
            client_name="chorus-worker-health",
            max_connections=4,
        )
        engine = create_engine(settings.model_copy(update={"db_pool_size": 1}))
        app.state.health.add_check("redis", redis_check(redis))
        app.state.health.add_check("postgres", DatabaseCheck(engine))
        if worker is not None:
            app.state.health.add_check("job_loop", worker.check_loop)
        try:
            yield
        finally:
            await redis.aclose()
            await engine.dispose()

    return create_service_app(
        settings, title="Chorus worker", version=__version__, lifespan=lifespan
    )


async def _stop(worker: ChorusWorker, wait: float, force: asyncio.Event) -> None:
    drain = asyncio.create_task(worker.drain(wait))
    forced = asyncio.create_task(force.wait())
    await asyncio.wait({drain, forced}, return_when=asyncio.FIRST_COMPLETED)
    if not drain.done():
        logger.warning("second signal: cancelling running jobs now")
        await worker.drain(0)
        await drain
    forced.cancel()


async def serve(settings: WorkerServiceSettings, *, jobs: Sequence[JobSpec] | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status (0 after a clean drain).

    ``jobs`` replaces :func:`job_specs` (a benchmark registers a job of its own).
    """
    worker = create_worker(settings, jobs=jobs)
    app = create_app(settings, worker=worker)
    server = DrainingServer(
        uvicorn_config(app, settings),
        lifecycle=app.state.lifecycle,
        drain_seconds=0,
        own_signals=False,
    )
    stop, force = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        (force if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    http = asyncio.create_task(server.serve(), name="http")
    job_loop = asyncio.create_task(worker.async_run(), name="jobs")
    stopping = asyncio.create_task(stop.wait(), name="signal")
    await asyncio.wait({http, job_loop, stopping}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if not stopping.done():
        failed = job_loop if job_loop.done() else http
        error = None if failed.cancelled() else failed.exception()
        logger.error("%s ended on its own: %r; exiting", failed.get_name(), error)
        status = 1
        stopping.cancel()
    else:
        logger.info(
            "shutting down: no new jobs; running ones get %ss", settings.job_completion_wait
        )

    worker.allow_pick_jobs = False  # before anyone can see the 503 below
    await app.state.lifecycle.drain(0)  # /readyz answers 503 from here on
    await _stop(worker, settings.job_completion_wait, force)
    await worker.close()  # cancels the loop, runs on_shutdown, closes the pool
    await asyncio.gather(job_loop, return_exceptions=True)
    server.should_exit = True
    await asyncio.gather(http, return_exceptions=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    logger.info("stopped")
    return status
