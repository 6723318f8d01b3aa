"""What a job raises to say how it failed; the job policy turns these into arq's terms.

Besides the errors jobs raise on purpose, one kind of failure is recognised wherever it
comes from: Postgres refusing the data itself (:func:`refused_by_postgres`) — the same
input fails the same way on every try, so retrying it only delays the dead letter.
"""

from __future__ import annotations

from typing import Final

import asyncpg
from sqlalchemy.exc import DBAPIError

__all__ = [
    "DeadLetteredError",
    "JobError",
    "PermanentJobError",
    "TemporaryJobError",
    "refused_by_postgres",
]

#: SQLSTATE classes of refused data: 22 data exception (NUL in text, a value out of
#: range, bad input syntax), 23 integrity constraint violation.
_REFUSED_CLASSES: Final = ("22", "23")


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


def refused_by_postgres(exc: BaseException) -> bool:
    """True when ``exc`` is Postgres (or asyncpg, encoding a parameter) refusing the data,
    rather than the database being unreachable or busy."""
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _REFUSED_CLASSES
    cause = getattr(exc.orig, "__cause__", None)
    return isinstance(cause, asyncpg.exceptions.DataError)
