"""The worker's Prometheus metrics (served on its HTTP port's ``/metrics``).

Labels stay bounded: ``function`` is one of the registered job names. Names are the
contract with the chart's alerts and dashboards (``docs/design.md``); the ones after the
contract's are extras this service adds.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "ASSISTANT_REPLIES",
    "DEAD_LETTERS",
    "EMAILS_SENT",
    "JOBS_FAILED",
    "JOBS_IN_PROGRESS",
    "JOBS_RETRIED",
    "JOBS_STARTED",
    "JOBS_SUCCEEDED",
    "JOB_DURATION",
    "JOB_LAG",
    "MESSAGES_PERSISTED",
    "PERSIST_GAPS",
    "QUEUE_DEPTH",
    "QUEUE_WAKEUPS_ACTIVE",
    "ROOM_MESSAGES_PRUNED",
    "UNREADABLE_JOBS",
    "declare_functions",
]

JOBS_STARTED = Counter(
    "chorus_worker_jobs_started_total", "Job attempts started, by function.", ["function"]
)
JOBS_SUCCEEDED = Counter(
    "chorus_worker_jobs_succeeded_total", "Job attempts that succeeded.", ["function"]
)
JOBS_RETRIED = Counter(
    "chorus_worker_jobs_retried_total",
    "Job attempts that failed (or were interrupted) and will be tried again.",
    ["function"],
)
JOBS_FAILED = Counter(
    "chorus_worker_jobs_failed_total",
    "Jobs that failed for good: no try left, or a permanent error.",
    ["function"],
)
JOB_DURATION = Histogram(
    "chorus_worker_job_duration_seconds",
    "Duration of one job attempt, whatever its outcome.",
    ["function"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
JOB_LAG = Histogram(
    "chorus_worker_job_lag_seconds",
    "From when a job became due (enqueued, or its deferral/retry delay ended) to its start.",
    ["function"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
QUEUE_DEPTH = Gauge(
    "chorus_worker_queue_depth",
    "Jobs in the arq queue (due, deferred and running), refreshed about once a second.",
)
DEAD_LETTERS = Counter(
    "chorus_worker_dead_letters_total", "Rows written to failed_jobs.", ["function"]
)
EMAILS_SENT = Counter("chorus_worker_emails_sent_total", "Mails accepted by the SMTP server.")

JOBS_IN_PROGRESS = Gauge("chorus_worker_jobs_in_progress", "Job attempts running right now.")
QUEUE_WAKEUPS_ACTIVE = Gauge(
    "chorus_worker_queue_wakeups_active",
    "1 while Redis keyspace events wake the job loop, 0 while it falls back to polling.",
)
MESSAGES_PERSISTED = Counter(
    "chorus_worker_messages_persisted_total", "Room events newly written to room_messages."
)
PERSIST_GAPS = Counter(
    "chorus_worker_persist_gaps_total",
    "Times a room's stream had been trimmed past the last persisted entry (events lost).",
)
UNREADABLE_JOBS = Counter(
    "chorus_worker_unreadable_jobs_total",
    "Queue entries that were not jobs (a job id that is not UTF-8, a payload that is not"
    " a JSON job, e.g. a pickle written into Redis): never run.",
)
ROOM_MESSAGES_PRUNED = Counter(
    "chorus_worker_room_messages_pruned_total",
    "room_messages rows deleted for being older than ROOM_MESSAGES_RETENTION_DAYS.",
)
ASSISTANT_REPLIES = Counter(
    "chorus_worker_assistant_replies_total",
    "Assistant answers finished in rooms, by outcome (completed|error).",
    ["outcome"],
)


def declare_functions(names: Iterable[str]) -> None:
    """Export every per-function series at zero from the start.

    A counter born at 1 has no earlier sample, so ``rate()`` and ``increase()`` miss its
    first increment: the first dead letter after a restart would never fire
    ``ChorusWorkerDeadLetters``, and the dashboard's failure panels would show no data on a
    healthy worker. The function names are known when the worker is built.
    """
    for name in names:
        for metric in (JOBS_STARTED, JOBS_SUCCEEDED, JOBS_RETRIED, JOBS_FAILED, DEAD_LETTERS):
            metric.labels(name)
        JOB_DURATION.labels(name)
        JOB_LAG.labels(name)
