"""The arq worker the process runs: arq's ``Worker`` with the loop's three additions.

What it runs is declared in :class:`chorus_worker.main.WorkerSettings`; arq stays at this
edge (and ``policy.py``); jobs are plain functions in ``chorus_worker.jobs``.

:class:`ChorusWorker` is arq's ``Worker`` with:

- **wake-ups instead of a fixed poll** — the loop sleeps until a keyspace event says a job
  arrived (``wakeup.py``), a running job frees a slot the loop wanted, or the next deferred
  job falls due; without keyspace events it polls every ``POLL_DELAY``;
- **a heartbeat** the loop updates each turn, for ``/readyz``; Redis errors in the loop are
  logged and retried rather than ending the process;
- **a drain**: stop taking jobs at once, give running ones ``JOB_COMPLETION_WAIT`` seconds,
  cancel what is left (arq puts cancelled jobs back in the queue for another worker);
- **slots the assistant cannot take**: at most ``ASSISTANT_MAX_JOBS`` assistant answers
  run at once, so a flood of ``@assistant`` leaves the other slots to welcome mails, usage
  and history. Assistant jobs over that cap stay queued, and the loop reads past a page
  full of them (arq's read offset) to find the other jobs behind;
- **JSON jobs only**: jobs are read with ``chorus_common.queue``'s codec; a payload that is
  not a JSON job (a pickle written straight into Redis) is never run — arq fails it, and
  this worker also dead-letters it (``unreadable_payload``), logs and counts it;
- **no poison in the queue**: an entry that is not even a job id (bytes that are not
  UTF-8, written by something other than arq) is removed, logged and counted instead of
  ending the loop — which would restart the process into the same entry, forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

import orjson
from arq.constants import job_key_prefix
from arq.worker import Worker
from redis.exceptions import RedisError

from chorus_common.queue import UnreadableJobError, deserialize_job
from chorus_common.redis_client import RedisEndpoint
from chorus_worker.deps import resources
from chorus_worker.domain.dead_letters import UNREADABLE_PAYLOAD, record_dead_letter
from chorus_worker.jobs.assistant import JOB_ID_PREFIX as ASSISTANT_JOB_PREFIX
from chorus_worker.metrics import DEAD_LETTERS, QUEUE_DEPTH, UNREADABLE_JOBS, declare_functions
from chorus_worker.resources import RESOURCES_KEY
from chorus_worker.settings import WorkerServiceSettings
from chorus_worker.transport.policy import ARQ_TIMEOUT_MARGIN
from chorus_worker.transport.wakeup import QueueWakeup

__all__ = ["ChorusWorker"]

logger = logging.getLogger("chorus.worker")

#: Seconds between polls while keyspace events flow: only a safety net for a lost event.
SAFETY_POLL_SECONDS: Final = 0.5
#: After a crash a job stays claimed until its in-progress key expires: longest timeout + this.
_IN_PROGRESS_MARGIN: Final = 5.0
_DEPTH_REFRESH_SECONDS: Final = 1.0
_REDIS_ERROR_PAUSE: Final = 1.0
#: Longest a turn of the loop may take (starting a page of jobs is ~4 round trips each).
_TURN_TIMEOUT: Final = 10.0
#: Time arq gets to put cancelled jobs back in the queue.
_REQUEUE_SECONDS: Final = 5.0
#: How much of an unreadable payload its dead letter shows.
_PREVIEW_BYTES: Final = 300


class ChorusWorker(Worker):
    """arq's worker, woken by keyspace events, with a heartbeat and a drain."""

    def __init__(self, settings: WorkerServiceSettings, **kwargs: Any) -> None:
        self.settings = settings
        self.idle_poll_delay = float(kwargs.pop("poll_delay", settings.poll_delay))
        # arq's loop must not sleep on its own: each turn of ours waits for a reason to poll.
        super().__init__(poll_delay=0, **kwargs)
        declare_functions([*self.functions, UNREADABLE_PAYLOAD])
        # The longest job timeout of ours (arq's sit ARQ_TIMEOUT_MARGIN behind them).
        longest = max(
            (f.timeout_s for f in self.functions.values() if f.timeout_s is not None),
            default=self.job_timeout_s,
        )
        self.in_progress_timeout_s = longest - ARQ_TIMEOUT_MARGIN + _IN_PROGRESS_MARGIN
        self._wake = asyncio.Event()
        self._saturated = False
        #: Assistant jobs were left queued because their slots were taken.
        self._assistant_capped = False
        self._more_due = False
        self._next_depth_refresh = 0.0
        #: True while the loop's last turn could not reach Redis.
        self.redis_failing = False
        self.last_beat = self.loop.time()
        self.wakeup: QueueWakeup | None = None

    # -- the loop ----------------------------------------------------------------------------

    async def main(self) -> None:
        """Run arq's loop, with the wake-up listener beside it."""
        listener: asyncio.Task[None] | None = None
        if self.settings.queue_wakeup == "keyspace":
            db = int(self.pool.connection_pool.connection_kwargs.get("db", 0))
            self.wakeup = QueueWakeup(
                RedisEndpoint.from_settings(self.settings),
                queue=self.queue_name,
                db=db,
                wake=self._wake.set,
                enable_events=self.settings.redis_enable_keyspace_events,
            )
            listener = asyncio.create_task(self.wakeup.run(), name="queue-wakeup")
        try:
            await super().main()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _poll_iteration(self) -> None:
        if _cancel_requested():
            # A library swallowed the cancellation meant for this loop (see _cancel_all).
            raise asyncio.CancelledError
        self.last_beat = self.loop.time()
        self._wake.clear()  # a wake-up from now on means: poll again
        try:
            async with asyncio.timeout(_TURN_TIMEOUT):  # a hung Redis must not stop the loop
                await super()._poll_iteration()
                await self._refresh_queue_depth()
                delay = await self._next_delay()
        except (RedisError, OSError) as exc:  # TimeoutError is an OSError
            if not self.redis_failing:
                logger.warning("job loop cannot reach Redis (%s); retrying", exc)
            self.redis_failing = True
            delay = _REDIS_ERROR_PAUSE
        else:
            if self.redis_failing:
                logger.info("job loop reaches Redis again")
            self.redis_failing = False
        self.last_beat = self.loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Start due jobs one by one, stopping as soon as a drain begins or slots run out.

        Jobs this worker is running are still in the queue (arq removes them when they
        end); they are skipped here rather than re-checked in Redis on every turn. So are
        assistant jobs once ``ASSISTANT_MAX_JOBS`` of them run: when a whole page was such
        jobs, the next turn reads the page after it (arq's read offset), so the jobs queued
        behind a flood of questions still start.
        """
        assistants = sum(
            1
            for job_id, task in self.tasks.items()
            if job_id.startswith(ASSISTANT_JOB_PREFIX) and not task.done()
        )
        capped = False
        for raw in job_ids:
            if not self.allow_pick_jobs or self.job_counter >= self.max_jobs:
                break
            try:
                job_id = raw.decode()
            except UnicodeDecodeError:
                await self._drop_unreadable(raw)
                continue
            if job_id in self.tasks:
                continue
            if job_id.startswith(ASSISTANT_JOB_PREFIX):
                if assistants >= self.settings.assistant_slots:
                    capped = True
                    continue
                assistants += 1
            await super().start_jobs([raw])
        self._saturated = self.job_counter >= self.max_jobs
        self._assistant_capped = capped
        # A full page of due jobs: more are probably waiting behind it.
        self._more_due = len(job_ids) >= self.queue_read_limit
        if capped and self._more_due and not self._saturated:
            self._queue_read_offset += len(job_ids)
        else:
            self._queue_read_offset = 0

    async def _drop_unreadable(self, entry: bytes) -> None:
        """Remove a queue entry no job can have (arq would fail decoding it on every turn)."""
        UNREADABLE_JOBS.inc()
        logger.error("removed a queue entry that is not a job id: %r", entry[:200])
        await self.pool.zrem(self.queue_name, entry)

    def _release_sem_dec_counter_on_complete(self) -> None:
        super()._release_sem_dec_counter_on_complete()
        if self._saturated or self._assistant_capped:
            # Due jobs may be waiting for exactly this slot.
            self._saturated = self._assistant_capped = False
            self._wake.set()

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """arq's end of a job that did not run; an unreadable payload is also dead-lettered."""
        if _unreadable(result_data):
            await self._refuse_payload(job_id)
        await super().finish_failed_job(job_id, result_data)

    async def _refuse_payload(self, job_id: str) -> None:
        """Log, count and dead-letter a payload that is not a JSON job (it was not run)."""
        raw = await self.pool.get(job_key_prefix + job_id) or b""
        try:
            deserialize_job(raw)
        except UnreadableJobError as exc:
            reason = str(exc)
        else:
            reason = "not an arq job: keys f, a, k, t, et expected"
        UNREADABLE_JOBS.inc()
        logger.error("refused job %s without running it: %s", job_id, reason)
        if RESOURCES_KEY not in self.ctx:
            return
        try:
            row_id = await record_dead_letter(
                resources(self.ctx).sessions,
                job_id=job_id,
                function=UNREADABLE_PAYLOAD,
                args=(),
                kwargs={},
                error=f"refused unread: {reason}",
                tries=1,
                record={"payload": repr(raw[:_PREVIEW_BYTES])},
            )
        except Exception:
            logger.exception("could not dead-letter the refused job %s", job_id)
            return
        DEAD_LETTERS.labels(UNREADABLE_PAYLOAD).inc()
        logger.error(
            "refused job %s dead-lettered as #%d",
            job_id,
            row_id,
            extra={"job_id": job_id, "dead_letter_id": row_id},
        )

    async def _next_delay(self) -> float:
        if self._saturated or not self.allow_pick_jobs:
            return self.idle_poll_delay  # a job ending wakes us (see above)
        if self._more_due:
            return 0.0
        if self.wakeup is None or not self.wakeup.active:
            return self.idle_poll_delay
        # Nothing announces a deferred job (a retry, a cron run) falling due: look it up.
        now = time.time()
        upcoming = await self.pool.zrangebyscore(
            self.queue_name, min=f"({int(now * 1000)}", max="+inf", start=0, num=1, withscores=True
        )
        if not upcoming:
            return SAFETY_POLL_SECONDS
        due = float(upcoming[0][1]) / 1000
        return min(SAFETY_POLL_SECONDS, max(0.0, due - now))

    async def _refresh_queue_depth(self) -> None:
        if self.loop.time() < self._next_depth_refresh:
            return
        self._next_depth_refresh = self.loop.time() + _DEPTH_REFRESH_SECONDS
        QUEUE_DEPTH.set(await self.pool.zcard(self.queue_name))

    # -- health and shutdown -----------------------------------------------------------------

    def loop_alive(self) -> bool:
        """True while the job loop runs and has turned within ``HEARTBEAT_TIMEOUT``."""
        if self.main_task is None or self.main_task.done():
            return False
        return self.loop.time() - self.last_beat < self.settings.heartbeat_timeout

    async def check_loop(self) -> None:
        """Readiness check: raise unless :meth:`loop_alive`."""
        if self.main_task is None or self.main_task.done():
            msg = "the job loop is not running"
            raise RuntimeError(msg)
        silent = self.loop.time() - self.last_beat
        if silent >= self.settings.heartbeat_timeout:
            msg = f"the job loop has been silent for {silent:.1f}s"
            raise RuntimeError(msg)

    def running_jobs(self) -> int:
        """Jobs started and not finished."""
        return sum(not t.done() for t in self.tasks.values())

    async def close(self) -> None:
        """Stop the loop, run ``on_shutdown`` and close the pool (arq's, minus its quirks).

        arq's own ``close`` logs a fake SIGUSR1, calls Redis' deprecated ``close`` and stops
        at the first Redis error before ``on_shutdown``; this one always releases clients.
        """
        await _cancel_all(list(self.job_tasks.values()), grace=_REQUEUE_SECONDS)
        await _cancel_all(list(self.tasks.values()), grace=_REQUEUE_SECONDS)
        if self.main_task is not None:
            await _cancel_all([self.main_task], grace=_REQUEUE_SECONDS)
        if self._pool is None:
            return
        with contextlib.suppress(RedisError, OSError):
            await self.pool.delete(self.health_check_key)
        try:
            if self.on_shutdown is not None:
                await self.on_shutdown(self.ctx)
        finally:
            await self.pool.aclose(close_connection_pool=True)
            self._pool = None

    async def drain(self, wait: float) -> None:
        """Take no new job; let running ones finish within ``wait`` s, then cancel them.

        Only the jobs themselves are cancelled, not arq's tasks around them: those then
        record the cancellation (the job goes back to the queue, unclaimed) and end.
        """
        self.allow_pick_jobs = False
        running = [t for t in self.tasks.values() if not t.done()]
        if not running:
            return
        logger.info("draining: waiting up to %ss for %d running jobs", wait, len(running))
        pending = set(running)
        if wait > 0:
            _, pending = await asyncio.wait(running, timeout=wait)
        if pending:
            logger.warning(
                "draining: %d jobs still running after %ss are cancelled (they will run again)",
                len(pending),
                wait,
            )
            await _cancel_all(list(self.job_tasks.values()), grace=_REQUEUE_SECONDS)
            await asyncio.wait(pending, timeout=_REQUEUE_SECONDS)


def _unreadable(result_data: bytes | None) -> bool:
    """True for the result arq writes when a job's payload could not be deserialized."""
    if result_data is None:
        return False
    try:
        result = orjson.loads(result_data)
    except orjson.JSONDecodeError:
        return False
    error = result.get("r") if isinstance(result, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("error"), dict)
        and error["error"].get("type") == "DeserializationError"
    )


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _cancel_all(tasks: list[asyncio.Task[Any]], *, grace: float) -> None:
    """Cancel ``tasks`` and wait up to ``grace`` s for them to end, cancelling again meanwhile.

    Again, because a cancellation can be lost: redis-py 5.x with hiredis checks a pooled
    connection under ``asyncio.timeout(0)``, and a cancel landing there is swallowed
    (redis/redis-py#4063 removes that check). One lost cancel must not leave a task
    running against clients we are about to close.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            logger.error("%d tasks ignored cancellation for %ss", len(pending), grace)
            return
        _, pending = await asyncio.wait(pending, timeout=min(0.1, remaining))
