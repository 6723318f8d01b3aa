"""Settings of the worker process (arq jobs plus a small health/metrics HTTP port).

One field per environment variable (pydantic-settings, case-insensitive): ``MAX_JOBS``,
``JOB_COMPLETION_WAIT``, ``SMTP_HOST``... Built once by the command line and passed down;
jobs read them from their context, never from ``os.environ``.
"""

from __future__ import annotations

from email.utils import parseaddr
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from chorus_common.settings import (
    EventHistorySettings,
    PostgresSettings,
    QueueSettings,
    RedisSettings,
)

__all__ = ["WorkerServiceSettings"]

#: Cron intervals must divide a minute, so runs stay evenly spaced across its boundary.
_MINUTE_DIVISORS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)


class WorkerServiceSettings(QueueSettings, EventHistorySettings, RedisSettings, PostgresSettings):
    """The worker's settings: the common ones, Postgres, the arq loop, SMTP and the assistant."""

    service_name: str = "worker"

    # -- the arq loop ----------------------------------------------------------------------
    max_jobs: int = Field(default=10, ge=1, description="jobs run concurrently")
    job_completion_wait: int = Field(
        default=20, ge=0, description="seconds running jobs get to finish after SIGTERM"
    )
    job_timeout: float = Field(
        default=60.0, gt=0, description="seconds a job may run (answer_in_room: see assistant)"
    )
    keep_result: int = Field(
        default=3600, ge=0, description="seconds a job's result stays readable (GET /api/jobs)"
    )
    max_tries: int = Field(
        default=10, ge=1, description="tries before a failing job becomes a dead letter"
    )
    retry_backoff_base: float = Field(
        default=1.0, gt=0, description="seconds before the 2nd try; doubles for each later one"
    )
    retry_backoff_max: float = Field(default=600.0, gt=0, description="cap on one retry delay")
    retry_jitter: float = Field(
        default=0.25, ge=0, lt=0.5, description="a delay is shortened by up to this fraction"
    )
    queue_wakeup: Literal["keyspace", "poll"] = Field(
        default="keyspace",
        description="keyspace: wake on Redis keyspace events for the queue; poll: only poll",
    )
    redis_enable_keyspace_events: bool = Field(
        default=True,
        description="let the worker add 'Kz' to Redis notify-keyspace-events when missing",
    )
    poll_delay: float = Field(
        default=0.05,
        gt=0,
        le=5,
        description="seconds between queue polls while keyspace wake-ups are unavailable",
    )
    heartbeat_timeout: float = Field(
        default=10.0, gt=0, description="/readyz fails when the job loop is silent this long"
    )
    persist_interval: int = Field(
        default=1, description="seconds between persist_messages runs (divides 60)"
    )
    persist_batch: int = Field(
        default=1000, ge=1, le=10_000, description="stream entries read per room and page"
    )
    room_messages_retention_days: int = Field(
        default=90, ge=0, description="room history older than this is deleted; 0 keeps it"
    )
    retention_batch: int = Field(
        default=5000, ge=1, le=100_000, description="rows one retention statement deletes"
    )
    retention_max_batches: int = Field(
        default=100, ge=1, description="statements one retention run may issue"
    )

    # -- e-mail ----------------------------------------------------------------------------
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_from: str = "Chorus <no-reply@chorus.localhost>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = Field(default=False, description="upgrade with STARTTLS (port 587)")
    smtp_tls: bool = Field(default=False, description="implicit TLS from the start (port 465)")
    smtp_timeout: float = Field(default=10.0, gt=0, description="seconds per SMTP step")
    app_url: str = Field(
        default="http://localhost:8080", description="public URL the welcome mail links to"
    )

    # -- the assistant in rooms ------------------------------------------------------------
    llm_gateway_url: str = Field(
        default="http://localhost:8003", description="the gateway's base URL; we call <url>/v1"
    )
    llm_gateway_api_key: SecretStr = SecretStr("")
    assistant_model: str = Field(default="assistant", min_length=1)
    assistant_max_tokens: int = Field(default=512, ge=1)
    assistant_system_prompt: str = (
        "You are the Chorus assistant, answering in a group chat room. "
        "Be brief, friendly and precise."
    )
    assistant_timeout: float = Field(
        default=120.0, gt=0, description="seconds for a whole answer, first token to last"
    )
    assistant_idle_timeout: float = Field(
        default=30.0, gt=0, description="seconds without a byte from the gateway before giving up"
    )
    assistant_delta_interval: float = Field(
        default=0.02, ge=0, le=1, description="seconds over which tokens coalesce into one event"
    )
    assistant_max_prompt_chars: int = Field(default=8000, ge=1)
    assistant_max_jobs: int = Field(
        default=6,
        ge=1,
        description="assistant answers run at once; the other MAX_JOBS slots stay for the rest",
    )

    @field_validator("persist_interval")
    @classmethod
    def _divides_a_minute(cls, value: int) -> int:
        if value not in _MINUTE_DIVISORS:
            msg = f"PERSIST_INTERVAL must divide 60: one of {_MINUTE_DIVISORS}"
            raise ValueError(msg)
        return value

    @field_validator("smtp_from")
    @classmethod
    def _an_address(cls, value: str) -> str:
        if "@" not in parseaddr(value)[1]:
            msg = "SMTP_FROM must be an address, e.g. 'Chorus <no-reply@example.com>'"
            raise ValueError(msg)
        return value

    @field_validator("smtp_username", "smtp_password", mode="before")
    @classmethod
    def _empty_means_no_login(cls, value: object) -> object:
        # A Secret key present but empty (an optional credential left blank) means "no
        # login": logging in with empty credentials is refused by relays that take none.
        return None if value == "" else value

    @field_validator("llm_gateway_url", "app_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.smtp_tls and self.smtp_starttls:
            msg = "SMTP_TLS (implicit TLS) and SMTP_STARTTLS exclude each other"
            raise ValueError(msg)
        if self.retry_backoff_max < self.retry_backoff_base:
            msg = "RETRY_BACKOFF_MAX must be at least RETRY_BACKOFF_BASE"
            raise ValueError(msg)
        return self

    @property
    def assistant_slots(self) -> int:
        """Assistant answers run at once: ``ASSISTANT_MAX_JOBS``, leaving at least one of
        ``MAX_JOBS`` to the other jobs (all of them if ``MAX_JOBS`` is 1)."""
        return max(1, min(self.assistant_max_jobs, self.max_jobs - 1))

    @property
    def sender_address(self) -> str:
        """The bare address of ``SMTP_FROM`` (the envelope sender)."""
        return parseaddr(self.smtp_from)[1]

    @property
    def assistant_job_timeout(self) -> float:
        """``answer_in_room`` may run its answer's timeout plus time to publish the end."""
        return self.assistant_timeout + 2.0
