"""Building the arq ``Worker`` from settings (arq stays at this edge)."""

from __future__ import annotations

from arq.connections import RedisSettings
from arq.worker import Worker

from chorus_worker.jobs.noop import noop
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["FUNCTIONS", "build_worker"]

FUNCTIONS = [noop]


def build_worker(settings: WorkerServiceSettings) -> Worker:
    """An arq worker for the default queue; signals are handled by ``__main__``."""
    return Worker(
        functions=FUNCTIONS,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        max_jobs=settings.max_jobs,
        job_completion_wait=settings.job_completion_wait,
        handle_signals=False,
    )
