"""Usage accounting: one ``record_llm_usage`` job per request, enqueued off the hot path.

After a request ends (completed, cut off by the client, or failed mid-stream) the relay
hands a :class:`UsageRecord` to the :class:`UsageRecorder`, which only appends it to an
in-process buffer: the client's response never waits for Redis, and a Redis hiccup
never fails it. Background tasks drain the buffer into arq jobs
``record_llm_usage(usage)`` with job id ``usage:<request_id>`` (so a retried enqueue
cannot double-bill); the worker writes ``llm_usage_events`` and the per-user daily
totals. A record that cannot be enqueued after retries — or that finds the buffer full
— is logged in full (``usage record dropped``) and counted in
``chorus_gateway_usage_records_dropped_total``, so it can be replayed by hand.

A job is enqueued by one Lua script doing what ``ArqRedis.enqueue_job`` does (skip if the
job or its result exists, else store the job and add it to the queue) in one round trip
instead of arq's three (WATCH, EXISTS, MULTI/EXEC): on a busy machine every write to
Redis wakes another process, and these ran while the next request was being served.
The job bytes are arq's own (``serialize_job``), so the worker reads them as any job.

A record keeps the ``traceparent`` of the request it accounts for, and is enqueued under
an ``enqueue record_llm_usage`` span in that trace: the worker's job joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from chorus_common.job_tracing import enqueue_span
from chorus_common.trace_context import context_from_traceparent, current_traceparent
from chorus_gateway.metrics import USAGE_DROPPED

__all__ = ["JOB_NAME", "UsageRecord", "UsageRecorder"]

logger = logging.getLogger("chorus.gateway.usage")

JOB_NAME = "record_llm_usage"
_ATTEMPTS = 3
_WORKERS = 4

# KEYS: job key, result key, queue. ARGV: serialized job, expiry ms, job id, score.
# ArqRedis.enqueue_job's transaction, atomically: an existing job or result wins.
_ENQUEUE_LUA = """
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('PSETEX', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One request's usage; the fields are the columns of ``llm_usage_events``."""

    request_id: str
    subject: str
    user_id: int | None
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    #: True when the provider sent no usage and the gateway estimated it.
    estimated: bool
    #: completed | cut_off | error
    outcome: str
    #: The virtual key and its team, when a virtual key was used.
    key_id: int | None = None
    team_id: int | None = None
    #: What the call cost, in micro-units of currency (0 when the model has no price).
    cost_micros: int = 0
    cached_tokens: int = 0

    def as_job_argument(self) -> dict[str, Any]:
        """The ``usage`` dict the job receives."""
        return dataclasses.asdict(self)


class UsageRecorder:
    """Buffers usage records and enqueues them as arq jobs in the background."""

    def __init__(self, arq: ArqRedis, *, queue_name: str, buffer: int) -> None:
        self._arq = arq
        self._queue_name = queue_name
        #: Records, each with the traceparent of its request (None with tracing off).
        self._buffer: asyncio.Queue[tuple[UsageRecord, str | None]] = asyncio.Queue(maxsize=buffer)
        self._workers: list[asyncio.Task[None]] = []
        self._enqueue_script = arq.register_script(_ENQUEUE_LUA)

    def record(self, usage: UsageRecord) -> None:
        """Hand a record over; never blocks, never raises."""
        try:
            self._buffer.put_nowait((usage, current_traceparent()))
        except asyncio.QueueFull:
            self._dropped(usage, "buffer full")

    def start(self) -> None:
        """Start the enqueuing tasks."""
        self._workers = [
            asyncio.create_task(self._drain(), name=f"usage-enqueue-{i}") for i in range(_WORKERS)
        ]

    async def stop(self, grace: float = 5.0) -> None:
        """Enqueue what is buffered (for up to ``grace`` seconds), then stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._buffer.join(), grace)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._buffer.empty():
            self._dropped(self._buffer.get_nowait()[0], "shutdown")

    async def _drain(self) -> None:
        while True:
            usage, traceparent = await self._buffer.get()
            try:
                with enqueue_span(
                    JOB_NAME,
                    queue=self._queue_name,
                    job_id=f"usage:{usage.request_id}",
                    parent=context_from_traceparent(traceparent),
                ):
                    await self._enqueue(usage)
            finally:
                self._buffer.task_done()

    async def _enqueue(self, usage: UsageRecord) -> None:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                await self._enqueue_job(usage)
            except Exception as exc:
                if attempt == _ATTEMPTS:
                    self._dropped(usage, f"{type(exc).__name__}: {exc}")
                    return
                await asyncio.sleep(0.2 * attempt)
            else:
                return

    async def _enqueue_job(self, usage: UsageRecord) -> None:
        job_id = f"usage:{usage.request_id}"
        now = timestamp_ms()
        job = serialize_job(
            JOB_NAME, (usage.as_job_argument(),), {}, None, now, serializer=self._arq.job_serializer
        )
        await self._enqueue_script(
            keys=[job_key_prefix + job_id, result_key_prefix + job_id, self._queue_name],
            args=[job, self._arq.expires_extra_ms, job_id, now],
        )

    @staticmethod
    def _dropped(usage: UsageRecord, reason: str) -> None:
        USAGE_DROPPED.inc()
        logger.error("usage record dropped (%s)", reason, extra={"usage": usage.as_job_argument()})
