"""arq: the internals ``ChorusWorker`` (``transport/worker.py``) overrides and reads.

arq is pinned in ``pyproject.toml`` below the next minor release for these: an upgrade
that moves one of them fails here, in one obvious place, before any job test runs.
"""

from __future__ import annotations

import inspect
from typing import Any

from arq.connections import ArqRedis
from arq.cron import CronJob, cron
from arq.worker import Function, Worker, func

#: Methods ChorusWorker overrides, with the parameters arq calls them with.
OVERRIDDEN = {
    "main": ["self"],
    "_poll_iteration": ["self"],
    "start_jobs": ["self", "job_ids"],
    "_release_sem_dec_counter_on_complete": ["self"],
    "finish_failed_job": ["self", "job_id", "result_data"],
    "close": ["self"],
}

#: Attributes ChorusWorker reads or sets on a built worker.
ATTRIBUTES = (
    "main_task",
    "tasks",
    "job_tasks",
    "job_counter",
    "max_jobs",
    "allow_pick_jobs",
    "queue_read_limit",
    "_pool",
    "health_check_key",
    "on_shutdown",
    "ctx",
    "functions",
    "loop",
    "queue_name",
    "in_progress_timeout_s",
    "job_timeout_s",
    "_queue_read_offset",
)


async def job(ctx: dict[str, Any]) -> None:
    """A job for building a worker."""


def test_the_methods_chorus_worker_overrides_keep_their_signatures() -> None:
    for name, parameters in OVERRIDDEN.items():
        method = getattr(Worker, name)
        assert list(inspect.signature(method).parameters) == parameters, name


def test_the_loop_calls_the_overridden_methods() -> None:
    # The wake-ups replace arq's sleep between polls: each turn is one _poll_iteration, and
    # a finished job frees its slot through _release_sem_dec_counter_on_complete.
    assert "await self._poll_iteration()" in inspect.getsource(Worker.main)
    assert "await self.start_jobs(" in inspect.getsource(Worker._poll_iteration)
    assert "self._release_sem_dec_counter_on_complete()" in inspect.getsource(Worker.start_jobs)
    assert "self.in_progress_timeout_s" in inspect.getsource(Worker.start_jobs)
    # Capped assistant jobs are read past by moving the offset the poll reads from.
    assert "start=self._queue_read_offset" in inspect.getsource(Worker._poll_iteration)
    # A payload that cannot be deserialized ends in finish_failed_job, as a
    # DeserializationError result (the worker then dead-letters it).
    run_job = inspect.getsource(Worker.run_job)
    assert "deserialize_job_raw(" in run_job
    assert "self.finish_failed_job(job_id" in run_job


async def test_a_built_worker_has_the_attributes_chorus_worker_uses() -> None:
    pool = ArqRedis(host="127.0.0.1", port=1)  # never connected
    worker = Worker(
        functions=[func(job, name="job", timeout=3)],
        cron_jobs=[cron(job, name="tick", second={0}, timeout=4)],
        redis_pool=pool,
        poll_delay=0,
        handle_signals=False,
    )
    try:
        for name in ATTRIBUTES:
            assert hasattr(worker, name), name
        assert worker._pool is pool
        assert worker.main_task is None
        assert worker.tasks == {}
        assert worker.job_tasks == {}
        # Jobs and cron jobs are both in ``functions``, each with its timeout in seconds.
        assert {name: f.timeout_s for name, f in worker.functions.items()} == {
            "job": 3,
            "tick": 4,
        }
        assert isinstance(worker.functions["job"], Function)
        assert isinstance(worker.functions["tick"], CronJob)
    finally:
        await pool.aclose()
