"""Settings of the worker process (arq jobs plus a small health/metrics HTTP port)."""

from __future__ import annotations

from pydantic import Field

from chorus_common.settings import DatabaseSettings

__all__ = ["WorkerServiceSettings"]


class WorkerServiceSettings(DatabaseSettings):
    """The worker's settings: the common ones, Postgres, and the arq loop's tuning."""

    service_name: str = "worker"
    max_jobs: int = Field(default=10, ge=1, description="jobs run concurrently")
    job_completion_wait: int = Field(
        default=20, ge=0, description="seconds running jobs get to finish after SIGTERM"
    )
