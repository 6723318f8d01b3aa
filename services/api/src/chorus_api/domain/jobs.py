"""Background jobs: enqueueing on arq with an owner, and their status for that owner.

Job names and arguments are the contract with the worker (``docs/design.md``). Whoever enqueues on
a user's behalf records ``chorus:job-owner:<job_id>`` = user id (7 days), which is what
``GET /api/jobs/{id}`` checks: a job that is not yours does not exist, as far as you know.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from arq.connections import ArqRedis
from arq.jobs import DeserializationError, Job, JobResult, JobStatus

from chorus_api.domain.errors import NotFoundError
from chorus_api.metrics import JOBS_DEDUPLICATED, JOBS_ENQUEUED
from chorus_common.job_tracing import enqueue_span

__all__ = [
    "OWNER_PREFIX",
    "OWNER_TTL_SECONDS",
    "JobView",
    "account_exists_job_id",
    "enqueue",
    "enqueue_account_exists_email",
    "enqueue_analytics",
    "enqueue_welcome_email",
    "job_status",
    "welcome_job_id",
]

logger = logging.getLogger("chorus.api.jobs")

OWNER_PREFIX = "chorus:job-owner:"
OWNER_TTL_SECONDS = 7 * 86_400

PublicStatus = Literal["queued", "in_progress", "complete", "failed", "not_found"]


_PUBLIC_STATUS: dict[JobStatus, PublicStatus] = {
    JobStatus.deferred: "queued",
    JobStatus.queued: "queued",
    JobStatus.in_progress: "in_progress",
    JobStatus.complete: "complete",
    JobStatus.not_found: "not_found",
}


def welcome_job_id(user_id: int) -> str:
    """The deterministic id of a user's welcome mail job: at most one per user."""
    return f"welcome:{user_id}"


async def enqueue(
    arq: ArqRedis,
    *,
    function: str,
    args: Sequence[Any] = (),
    job_id: str | None = None,
    owner_id: int | None = None,
) -> str | None:
    """Enqueue ``function(*args)``; the job id, or None if that id already exists.

    The owner is recorded first, so the job is never visible without one.
    """
    if owner_id is not None and job_id is not None:
        await arq.set(OWNER_PREFIX + job_id, str(owner_id), ex=OWNER_TTL_SECONDS)
    with enqueue_span(function, queue=arq.default_queue_name, job_id=job_id):
        job = await arq.enqueue_job(function, *args, _job_id=job_id)
    if job is None:
        JOBS_DEDUPLICATED.labels(function).inc()
        return None
    JOBS_ENQUEUED.labels(function).inc()
    return job.job_id


async def enqueue_welcome_email(arq: ArqRedis, *, user_id: int) -> str | None:
    """``send_welcome_email(user_id)`` as ``welcome:<user_id>``, owned by the user.

    arq refuses an id that is queued, running or has a kept result, so enqueueing twice
    (a retried registration) leaves one job; the worker's job is idempotent besides.
    """
    return await enqueue(
        arq,
        function="send_welcome_email",
        args=(user_id,),
        job_id=welcome_job_id(user_id),
        owner_id=user_id,
    )


#: At most one "someone tried to sign up with your address" mail per account per this.
ACCOUNT_EXISTS_MAIL_SECONDS = 3600


def account_exists_job_id(user_id: int, *, now: float | None = None) -> str:
    """The id of the account-exists mail job of ``user_id`` for the current hour."""
    bucket = int((time.time() if now is None else now) // ACCOUNT_EXISTS_MAIL_SECONDS)
    return f"account-exists:{user_id}:{bucket}"


async def enqueue_account_exists_email(arq: ArqRedis, *, user_id: int) -> str | None:
    """``send_account_exists_email(user_id)``: someone registered the owner's address.

    The job id changes every hour and arq keeps a finished job's result for as long, so
    however often strangers try the address its owner gets at most one mail an hour.
    """
    return await enqueue(
        arq,
        function="send_account_exists_email",
        args=(user_id,),
        job_id=account_exists_job_id(user_id),
        owner_id=user_id,
    )


async def enqueue_analytics(arq: ArqRedis, *, event: str, properties: dict[str, Any]) -> None:
    """``record_analytics(event, properties)``, best effort: analytics never fail a request.

    Runs as a FastAPI background task after the response is sent; the worker uses the arq
    job id as its idempotency key.
    """
    try:
        await enqueue(arq, function="record_analytics", args=(event, properties))
    except Exception:
        logger.warning("could not enqueue analytics event %s", event, exc_info=True)


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as its owner sees it."""

    id: str
    function: str | None
    status: PublicStatus
    result: Any | None


def _json_safe(value: Any) -> Any:
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:
        return repr(value)


async def job_status(arq: ArqRedis, *, job_id: str, user_id: int) -> JobView:
    """The status of ``job_id`` if ``user_id`` owns it; :class:`NotFoundError` otherwise."""
    owner = await arq.get(OWNER_PREFIX + job_id)
    if owner is None or owner.decode() != str(user_id):
        raise NotFoundError(job_id)
    job = Job(
        job_id,
        redis=arq,
        _queue_name=arq.default_queue_name,
        _deserializer=arq.job_deserializer,
    )
    status = await job.status()
    try:
        info = await job.info()
    except DeserializationError:
        logger.warning("job %s cannot be deserialized", job_id)
        info = None
    function = info.function if info is not None else None
    if status is JobStatus.complete and isinstance(info, JobResult):
        if not info.success:
            return JobView(job_id, function, "failed", None)
        return JobView(job_id, function, "complete", _json_safe(info.result))
    return JobView(job_id, function, _PUBLIC_STATUS[status], None)
