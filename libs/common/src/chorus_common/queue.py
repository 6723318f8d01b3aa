"""The arq queue's wire format: jobs and results are JSON, never pickles.

arq encodes jobs with ``pickle`` unless told otherwise, and a worker unpickles whatever it
finds under ``arq:job:<id>``: anyone who can write to Redis could then run code in the
worker. Every Chorus producer (the api, realtime, the gateway) and the worker pass
:data:`JOB_CODEC` to arq instead (``ArqRedis(..., **JOB_CODEC)``, the worker's settings),
so a job is a JSON object and a payload that is not one is refused, not executed.

What JSON cannot carry, a job cannot take: arguments are JSON values (strings, numbers,
booleans, null, lists, objects with string keys; a ``datetime`` is written as ISO 8601
text). A producer passing anything else gets arq's ``SerializationError`` at enqueue
time. Tuples come back as lists, except a job's positional arguments, which arq expects
as a tuple. A failed job's exception is kept in its result as ``{"error": {"type",
"message"}}`` — enough for ``GET /api/jobs/{id}`` and the logs; the traceback is in the
worker's log and its dead letter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypedDict

import orjson

from chorus_common.job_tracing import traced_deserializer, traced_serializer

__all__ = ["JOB_CODEC", "JobCodec", "UnreadableJobError", "deserialize_job", "serialize_job"]

#: The first byte of every pickle of protocol 2 or later (arq's default encoding).
_PICKLE_PROTO: Final = 0x80


class UnreadableJobError(ValueError):
    """A payload on the queue that is not a JSON job (e.g. a pickle); it is never run."""


def _fallback(value: object) -> Any:
    if isinstance(value, BaseException):
        return {"error": {"type": type(value).__name__, "message": str(value)[:2000]}}
    msg = f"{type(value).__name__} is not JSON: jobs and results carry JSON values only"
    raise TypeError(msg)


def serialize_job(data: dict[str, Any]) -> bytes:
    """arq's ``job_serializer``: a job or result dict as JSON bytes."""
    return orjson.dumps(data, default=_fallback)


def deserialize_job(payload: bytes) -> dict[str, Any]:
    """arq's ``job_deserializer``: JSON bytes back to the dict; refuses anything else."""
    if payload[:1] == bytes((_PICKLE_PROTO,)):
        msg = "a pickled payload: Chorus jobs are JSON, pickles are refused unread"
        raise UnreadableJobError(msg)
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        msg = f"not a JSON job: {exc}"
        raise UnreadableJobError(msg) from None
    if not isinstance(data, dict):
        msg = f"not a JSON job: a {type(data).__name__}, not an object"
        raise UnreadableJobError(msg)
    if isinstance(data.get("a"), list):
        data["a"] = tuple(data["a"])
    return data


class JobCodec(TypedDict):
    """The two keyword arguments arq takes for its encoding."""

    job_serializer: Callable[[dict[str, Any]], bytes]
    job_deserializer: Callable[[bytes], dict[str, Any]]


#: Keyword arguments for ``ArqRedis`` and arq's ``Worker``: the one encoding of jobs. A
#: job enqueued inside a trace also carries the trace to the worker
#: (``chorus_common.job_tracing``).
JOB_CODEC: Final[JobCodec] = {
    "job_serializer": traced_serializer(serialize_job),
    "job_deserializer": traced_deserializer(deserialize_job),
}
