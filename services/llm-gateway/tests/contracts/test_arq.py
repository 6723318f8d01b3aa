"""arq: the internals the usage recorder (``domain/usage.py``) writes jobs with.

The recorder enqueues ``record_llm_usage`` with one Lua script that does what
``ArqRedis.enqueue_job`` does, so it needs arq's key prefixes, its job encoding
(``serialize_job``), its clock and the client's serializer and expiry. arq is pinned below
its next minor release in ``pyproject.toml``; the worker reads these jobs with plain arq.
"""

from __future__ import annotations

import inspect

from arq.connections import ArqRedis
from arq.constants import job_key_prefix, result_key_prefix
from arq.jobs import deserialize_job, serialize_job
from arq.utils import timestamp_ms


def test_the_keys_a_job_lives_under() -> None:
    assert (job_key_prefix, result_key_prefix) == ("arq:job:", "arq:result:")


def test_serialize_job_takes_what_the_recorder_passes_and_arq_reads_it_back() -> None:
    assert list(inspect.signature(serialize_job).parameters) == [
        "function_name",
        "args",
        "kwargs",
        "job_try",
        "enqueue_time_ms",
        "serializer",
    ]
    now = timestamp_ms()
    assert isinstance(now, int)
    encoded = serialize_job("record_llm_usage", ({"request_id": "r"},), {}, None, now)
    read = deserialize_job(encoded)
    assert (read.function, read.args, read.kwargs, read.job_try) == (
        "record_llm_usage",
        ({"request_id": "r"},),
        {},
        None,
    )
    assert int(read.enqueue_time.timestamp() * 1000) == now


async def test_the_client_carries_its_serializer_and_job_expiry() -> None:
    client = ArqRedis(host="127.0.0.1", port=1)  # never connected
    try:
        assert hasattr(client, "job_serializer")
        assert isinstance(client.expires_extra_ms, int)
    finally:
        await client.aclose()


def test_enqueue_job_does_what_the_script_does() -> None:
    # Skip when the job or its result exists; else store the job with an expiry and add
    # it to the queue scored by when it is due.
    source = inspect.getsource(ArqRedis.enqueue_job)
    for step in ("result_key_prefix", "job_key_prefix", ".exists(", ".psetex(", ".zadd("):
        assert step in source, step
