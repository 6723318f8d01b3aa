"""How every job runs: metrics, a timeout, retries with backoff, and dead letters.

Jobs stay plain ``async def job(ctx, ...)`` functions; :func:`instrument` wraps each one
and :func:`arq_function` / :func:`arq_cron` register it with arq (this module and
``worker.py`` are where arq's terms appear). For each attempt:

- the lag from when the job became due to now, and the attempt's duration, are observed;
- the job runs under its timeout;
- success → counted. :class:`PermanentJobError`, or Postgres refusing the job's data
  (a data or constraint error: a NUL character, a value out of range — the same input
  fails the same way every time) → a dead letter now, no retry;
- anything else (:class:`TemporaryJobError`, a timeout, an unexpected exception) → arq
  ``Retry`` with capped exponential backoff and jitter, until ``max_tries`` is spent, then
  a dead letter. A job may also raise arq's ``Retry`` itself to pick its own delay;
- cancellation (shutdown after ``JOB_COMPLETION_WAIT``) is left to arq, which runs the job
  again; a job whose last try was interrupted (killed worker) is dead-lettered on its next
  delivery without running again.

If Postgres refuses the dead letter, the verdict is parked in Redis and the job retried
later only to write it (arq is allowed ``DEAD_LETTER_WRITE_TRIES`` more deliveries for
that): the job itself does not run again.

With tracing on, each attempt is a consumer span ``job <function>``, a child of the span
that enqueued the job (``chorus_common.job_tracing``): the api request, the realtime
message or the gateway call the job came from (a job enqueued outside a trace starts
one). Cron runs, every few seconds, are not traced. A
failed attempt (retried or dead-lettered) is marked with its error; its duration
observation carries the trace as an exemplar.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn, cast

import orjson
from arq.cron import CronJob, cron
from arq.worker import Function, Retry, func
from opentelemetry.trace import SpanKind
from sqlalchemy.exc import SQLAlchemyError

from chorus_common.job_tracing import job_traceparent
from chorus_common.trace_context import context_from_traceparent
from chorus_common.tracing import current, exemplar, tracer
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.dead_letters import record_dead_letter
from chorus_worker.domain.errors import DeadLetteredError, PermanentJobError, refused_by_postgres
from chorus_worker.metrics import (
    DEAD_LETTERS,
    JOB_DURATION,
    JOB_LAG,
    JOBS_FAILED,
    JOBS_IN_PROGRESS,
    JOBS_RETRIED,
    JOBS_STARTED,
    JOBS_SUCCEEDED,
)
from chorus_worker.settings import WorkerServiceSettings

if TYPE_CHECKING:
    from arq.typing import WorkerCoroutine

__all__ = [
    "ARQ_TIMEOUT_MARGIN",
    "DEAD_LETTER_WRITE_TRIES",
    "JobFunction",
    "JobSpec",
    "arq_cron",
    "arq_function",
    "backoff_delay",
    "describe",
    "instrument",
    "pending_dead_letter_key",
]

logger = logging.getLogger("chorus.worker.jobs")

#: A job as written: ``async def job(ctx, *args, **kwargs)``.
JobFunction = Callable[..., Awaitable[Any]]

#: Deliveries arq allows beyond ``max_tries``, spent only on writing a refused dead letter.
DEAD_LETTER_WRITE_TRIES: Final = 20
#: arq's own timeout sits this far behind ours, so ours fires first and is handled.
ARQ_TIMEOUT_MARGIN: Final = 2.0
_PENDING_PREFIX: Final = "chorus:dead-letter:pending:"
_PENDING_TTL_SECONDS: Final = 7 * 86_400


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job function and how it is run."""

    function: JobFunction
    max_tries: int
    timeout: float
    #: False for cron jobs: their next run is the retry, a failure is only counted.
    dead_letter: bool = True
    #: False for cron jobs: a run every few seconds is not worth a trace each.
    traced: bool = True

    @property
    def name(self) -> str:
        """The name enqueuers use (the function's name)."""
        return self.function.__name__


def backoff_delay(
    try_number: int,
    *,
    base: float,
    cap: float,
    jitter: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed try ``try_number`` (1-based): ``base·2^(n-1)``, capped.

    The jitter shortens each delay by up to ``jitter`` (< 0.5) of itself, which spreads
    retries of jobs that failed together, yet keeps every delay longer than the one before
    until the cap: the shortest ``2d·(1-jitter)`` still exceeds the longest ``d``.
    """
    full = min(cap, base * 2.0 ** (try_number - 1))
    return full * (1.0 - jitter * rng())


def describe(exc: BaseException) -> str:
    """``Type: message`` then the traceback, for a dead letter's ``error``."""
    head = f"{type(exc).__name__}: {exc}"
    return head + "\n\n" + "".join(traceback.format_exception(exc)).rstrip()


def pending_dead_letter_key(job_id: str) -> str:
    """Where a dead letter Postgres refused waits for the next delivery."""
    return _PENDING_PREFIX + job_id


class _Attempt:
    """One delivery of one job: the decisions of the module docstring."""

    def __init__(
        self,
        spec: JobSpec,
        settings: WorkerServiceSettings,
        ctx: JobContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.ctx = ctx
        self.args = args
        self.kwargs = kwargs
        self.job_id: str = ctx["job_id"]
        self.job_try: int = ctx["job_try"]

    async def run(self) -> Any:
        if self.spec.dead_letter and self.job_try > 1:
            await self._settle_earlier_verdict()
        try:
            async with asyncio.timeout(self.spec.timeout):
                result = await self.spec.function(self.ctx, *self.args, **self.kwargs)
        except asyncio.CancelledError:
            JOBS_RETRIED.labels(self.spec.name).inc()
            raise
        except PermanentJobError as exc:
            await self._give_up(exc)
        except Retry as exc:
            if self.job_try >= self.spec.max_tries:
                gave_up = RuntimeError(
                    f"gave up after {self.job_try} tries (the last one asked for a retry)"
                )
                gave_up.__cause__ = exc
                await self._give_up(gave_up)
            JOBS_RETRIED.labels(self.spec.name).inc()
            raise
        except Exception as exc:
            if self.job_try >= self.spec.max_tries or refused_by_postgres(exc):
                await self._give_up(exc)
            delay = self._backoff()
            JOBS_RETRIED.labels(self.spec.name).inc()
            logger.warning(
                "%s failed (try %d of %d), retrying in %.2fs: %s: %s",
                self.spec.name,
                self.job_try,
                self.spec.max_tries,
                delay,
                type(exc).__name__,
                exc,
                extra={"job_id": self.job_id},
            )
            raise Retry(defer=delay) from exc
        JOBS_SUCCEEDED.labels(self.spec.name).inc()
        return result

    def _backoff(self) -> float:
        return backoff_delay(
            self.job_try,
            base=self.settings.retry_backoff_base,
            cap=self.settings.retry_backoff_max,
            jitter=self.settings.retry_jitter,
        )

    async def _settle_earlier_verdict(self) -> None:
        """A redelivery may carry a verdict already reached: write it instead of running."""
        redis = resources(self.ctx).redis
        parked = await redis.get(pending_dead_letter_key(self.job_id))
        if parked is not None:
            verdict = orjson.loads(parked)
            await self._write_dead_letter(str(verdict["error"]), int(verdict["tries"]))
        if self.job_try > self.spec.max_tries:
            await self._write_dead_letter(
                f"interrupted: try {self.job_try - 1} of {self.spec.max_tries} never finished "
                "(its worker was killed or shut down) and no try is left",
                self.job_try - 1,
            )

    async def _give_up(self, exc: BaseException) -> NoReturn:
        if not self.spec.dead_letter:
            JOBS_FAILED.labels(self.spec.name).inc()
            raise exc
        await self._write_dead_letter(describe(exc), self.job_try)

    async def _write_dead_letter(self, error: str, tries: int) -> NoReturn:
        found = resources(self.ctx)
        try:
            row_id = await record_dead_letter(
                found.sessions,
                job_id=self.job_id,
                function=self.spec.name,
                args=self.args,
                kwargs=self.kwargs,
                error=error,
                tries=tries,
            )
        except (SQLAlchemyError, OSError) as db_error:
            await found.redis.set(
                pending_dead_letter_key(self.job_id),
                orjson.dumps({"error": error, "tries": tries}),
                ex=_PENDING_TTL_SECONDS,
            )
            delay = self._backoff()
            logger.error(
                "%s: could not write its dead letter (%s); trying again in %.2fs",
                self.spec.name,
                db_error,
                delay,
                extra={"job_id": self.job_id},
            )
            JOBS_RETRIED.labels(self.spec.name).inc()
            raise Retry(defer=delay) from db_error
        if self.job_try > 1:
            await found.redis.delete(pending_dead_letter_key(self.job_id))
        JOBS_FAILED.labels(self.spec.name).inc()
        DEAD_LETTERS.labels(self.spec.name).inc()
        first_line = error.split("\n", 1)[0]
        logger.error(
            "%s dead-lettered as #%d after %d tries: %s",
            self.spec.name,
            row_id,
            tries,
            first_line,
            extra={"job_id": self.job_id, "dead_letter_id": row_id},
        )
        msg = f"dead letter #{row_id}: {first_line}"
        raise DeadLetteredError(msg)


def instrument(spec: JobSpec, settings: WorkerServiceSettings) -> JobFunction:
    """``spec.function`` wrapped in the policy, ready to register with arq."""
    name = spec.name
    lag, started, duration = (
        JOB_LAG.labels(name),
        JOBS_STARTED.labels(name),
        JOB_DURATION.labels(name),
    )

    async def attempt(ctx: JobContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # arq's score is when the job became due: its enqueue time, or the end of a deferral.
        lag.observe(max(0.0, time.time() - ctx["score"] / 1000))
        started.inc()
        JOBS_IN_PROGRESS.inc()
        begin = time.perf_counter()
        try:
            return await _Attempt(spec, settings, ctx, args, kwargs).run()
        finally:
            duration.observe(time.perf_counter() - begin, exemplar())
            JOBS_IN_PROGRESS.dec()

    async def run(ctx: JobContext, *args: Any, **kwargs: Any) -> Any:
        tracing = tracer() if spec.traced else None
        if tracing is None:
            return await attempt(ctx, args, kwargs)
        span = tracing.start_span(
            f"job {name}",
            context=context_from_traceparent(job_traceparent()),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "arq",
                "messaging.operation.type": "process",
                "messaging.destination.name": settings.arq_queue_name,
                "messaging.message.id": ctx["job_id"],
                "chorus.job.function": name,
                "chorus.job.try": ctx["job_try"],
            },
        )
        with current(span):
            return await attempt(ctx, args, kwargs)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = spec.function.__doc__
    return run


def arq_function(spec: JobSpec, settings: WorkerServiceSettings) -> Function:
    """A job, wrapped in the policy, as arq registers it."""
    return func(
        cast("WorkerCoroutine", instrument(spec, settings)),
        name=spec.name,
        timeout=spec.timeout + ARQ_TIMEOUT_MARGIN,
        max_tries=spec.max_tries + DEAD_LETTER_WRITE_TRIES,
    )


def arq_cron(
    spec: JobSpec,
    settings: WorkerServiceSettings,
    *,
    every: int = 1,
    every_minutes: int | None = None,
) -> CronJob:
    """A job the worker schedules itself: every ``every`` seconds (a divisor of 60), or,
    with ``every_minutes`` (a divisor of 60), at second 30 of every such minute."""
    if every_minutes is None:
        schedule: dict[str, Any] = {"second": set(range(0, 60, every))}
    else:
        schedule = {"minute": set(range(0, 60, every_minutes)), "second": 30}
    return cron(
        cast("WorkerCoroutine", instrument(spec, settings)),
        name=spec.name,
        **schedule,
        microsecond=0,
        run_at_startup=True,
        timeout=spec.timeout + ARQ_TIMEOUT_MARGIN,
        max_tries=spec.max_tries,
        keep_result=0,
    )
