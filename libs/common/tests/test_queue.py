"""The arq queue's wire format: JSON jobs, pickles refused unread."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime

import pytest
from arq.jobs import (
    DeserializationError,
    SerializationError,
    deserialize_job,
    deserialize_result,
    serialize_job,
    serialize_result,
)

from chorus_common.queue import JOB_CODEC, UnreadableJobError
from chorus_common.queue import deserialize_job as decode


def test_a_job_round_trips_as_json() -> None:
    raw = serialize_job(
        "record_analytics",
        ("order.created", {"n": 1, "when": datetime(2026, 1, 2, tzinfo=UTC)}),
        {"flag": True},
        1,
        1_700_000_000_000,
        serializer=JOB_CODEC["job_serializer"],
    )
    assert raw.startswith(b"{")
    job = deserialize_job(raw, deserializer=JOB_CODEC["job_deserializer"])
    assert job.function == "record_analytics"
    assert job.args == ("order.created", {"n": 1, "when": "2026-01-02T00:00:00+00:00"})
    assert job.kwargs == {"flag": True}


def test_a_failed_result_keeps_the_error_type_and_message() -> None:
    raw = serialize_result(
        "f",
        (),
        {},
        1,
        0,
        False,
        ValueError("bad input"),
        0,
        1,
        "ref",
        "arq:queue",
        "id1",
        serializer=JOB_CODEC["job_serializer"],
    )
    assert raw is not None
    result = deserialize_result(raw, deserializer=JOB_CODEC["job_deserializer"])
    assert (result.success, result.result) == (
        False,
        {"error": {"type": "ValueError", "message": "bad input"}},
    )


def test_what_json_cannot_carry_is_refused_at_enqueue() -> None:
    with pytest.raises(SerializationError):
        serialize_job("f", ({1, 2},), {}, 1, 0, serializer=JOB_CODEC["job_serializer"])


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (pickle.dumps({"f": "noop", "a": (), "k": {}, "t": 1, "et": 0}), "pickled payload"),
        (b"not json", "not a JSON job"),
        (b"[1, 2]", "a list, not an object"),
    ],
)
def test_anything_but_a_json_object_is_refused_unread(payload: bytes, reason: str) -> None:
    with pytest.raises(UnreadableJobError, match=reason):
        decode(payload)
    with pytest.raises(DeserializationError):
        deserialize_job(payload, deserializer=JOB_CODEC["job_deserializer"])
