"""Trace context through the arq queue: a job continues the trace that enqueued it.

Every producer — the api, realtime, the gateway, the worker itself (cron, replays) —
encodes its jobs with the one codec of the queue, ``chorus_common.queue.JOB_CODEC``,
whose serializer is wrapped by :func:`traced_serializer`: it adds the enqueuing span's
``traceparent`` to the job as the entry ``tp``, beside arq's own (``f``, ``a``, ``k``,
``t``, ``et``). arq reads only its own entries, so any arq worker still runs the job; a
job enqueued outside a trace, or with tracing off, is byte for byte what it was.

The worker's deserializer (:func:`traced_deserializer`) remembers the ``tp`` of the job
it is about to start in a context variable: arq decodes the job in the task that then
creates the job's own task, which inherits the variable, so :func:`job_traceparent` in
the job is the enqueuer's span — without touching arq's job ids, arguments or results.

:func:`enqueue_span` is the producer span ``enqueue <function>`` every enqueuer opens
around its enqueue (a no-op with tracing off), the span the job's trace hangs from.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import ContextVar
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from chorus_common.trace_context import current_traceparent
from chorus_common.tracing import child_tracer, current, tracer

__all__ = [
    "JOB_TRACE_KEY",
    "enqueue_span",
    "job_traceparent",
    "traced_deserializer",
    "traced_serializer",
]

#: The job entry holding the enqueuer's ``traceparent``.
JOB_TRACE_KEY: Final = "tp"

Serializer = Callable[[dict[str, Any]], bytes]
Deserializer = Callable[[bytes], dict[str, Any]]

_incoming: ContextVar[str | None] = ContextVar("chorus_job_traceparent", default=None)
_NO_SPAN: Final = nullcontext()


def traced_serializer(inner: Serializer) -> Serializer:
    """``inner`` adding ``tp`` to jobs enqueued in a span."""

    def serialize_job(data: dict[str, Any]) -> bytes:
        # A job has "f" and no "s" (arq's results have both): only jobs carry the context.
        if "s" not in data:
            traceparent = current_traceparent()
            if traceparent is not None:
                data = {**data, JOB_TRACE_KEY: traceparent}
        return inner(data)

    return serialize_job


def traced_deserializer(inner: Deserializer) -> Deserializer:
    """``inner`` remembering the job's ``tp`` for :func:`job_traceparent`."""

    def deserialize_job(payload: bytes) -> dict[str, Any]:
        data = inner(payload)
        if "s" not in data:
            value = data.get(JOB_TRACE_KEY)
            _incoming.set(value if isinstance(value, str) else None)
        return data

    return deserialize_job


def job_traceparent() -> str | None:
    """The ``traceparent`` of the span that enqueued the running job, if it had one."""
    return _incoming.get()


def enqueue_span(
    function: str, *, queue: str, job_id: str | None = None, parent: Context | None = None
) -> AbstractContextManager[object]:
    """The producer span around enqueueing ``function``; a no-op while tracing is off.

    Its parent is ``parent`` when given (a context carried from elsewhere), else the
    current span. In an unsampled trace there is no span: the job carries the unsampled
    context on, so the worker drops the trace too.
    """
    if parent is None:
        tracing = child_tracer()
        if tracing is None:
            return _NO_SPAN
    else:
        tracing = tracer()
        if tracing is None:
            return _NO_SPAN
        remote = trace.get_current_span(parent)
        if not remote.get_span_context().trace_flags.sampled:
            return current(remote, end=False)
    attributes = {
        "messaging.system": "arq",
        "messaging.operation.type": "send",
        "messaging.destination.name": queue,
        "chorus.job.function": function,
    }
    if job_id is not None:
        attributes["messaging.message.id"] = job_id
    return tracing.start_as_current_span(
        f"enqueue {function}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
    )
