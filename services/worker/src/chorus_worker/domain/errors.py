"""What a job raises to say how it failed; the job policy turns these into arq's terms."""

from __future__ import annotations

__all__ = ["DeadLetteredError", "JobError", "PermanentJobError", "TemporaryJobError"]


class JobError(Exception):
    """Base of the errors jobs raise on purpose."""


class PermanentJobError(JobError):
    """The job can never succeed as it is (bad arguments, a 5xx SMTP answer): dead-letter it now.

    Retrying would only repeat the failure; an operator fixes the cause and replays it.
    """


class TemporaryJobError(JobError):
    """The job may succeed later (a 4xx SMTP answer, a server down): retry with backoff."""


class DeadLetteredError(JobError):
    """Raised to arq once a job's dead letter is written, so arq records the job as failed."""
