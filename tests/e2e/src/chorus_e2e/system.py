"""The settings every system the suite starts runs with."""

from __future__ import annotations

__all__ = ["REALTIME_ENV", "SHARED_ENV", "WORKER_ENV"]

#: The shared settings, set once for every service: channels keep 100 events (the chat
#: journey outgrows it) for an hour, and jobs travel on a queue of their own — so every
#: journey shows the api, realtime, the gateway and the worker agreeing on both.
SHARED_ENV = {"HISTORY_SIZE": "100", "HISTORY_TTL": "3600", "ARQ_QUEUE_NAME": "chorus:e2e:jobs"}
#: Realtime replicas drain for 2 s.
REALTIME_ENV = {"DRAIN_SECONDS": "2", "GRACEFUL_TIMEOUT": "2"}
#: Short job timeouts: a killed worker's job is redelivered once its claim expires
#: (longest timeout + 5 s), and the assistant gives up on a silent gateway after 3 s.
WORKER_ENV = {
    "JOB_TIMEOUT": "4",
    "SMTP_TIMEOUT": "3",
    "ASSISTANT_TIMEOUT": "6",
    "ASSISTANT_IDLE_TIMEOUT": "3",
    "JOB_COMPLETION_WAIT": "3",
}
