"""Usage jobs as arq sees them: one per request id, readable by arq's own Job API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from chorus_common.queue import JOB_CODEC
from chorus_devstack.servers import RunningRedis
from chorus_gateway.domain.usage import JOB_NAME, UsageRecord, UsageRecorder


@pytest.fixture
async def arq_redis(gateway_redis: RunningRedis) -> AsyncIterator[ArqRedis]:
    client = ArqRedis.from_url(gateway_redis.url)
    client.job_serializer = JOB_CODEC["job_serializer"]
    client.job_deserializer = JOB_CODEC["job_deserializer"]
    yield client
    await client.aclose()


def record(request_id: str, outcome: str = "completed") -> UsageRecord:
    return UsageRecord(
        request_id=request_id,
        subject="user:7",
        user_id=7,
        model="mock-gpt",
        provider="mock",
        prompt_tokens=11,
        completion_tokens=5,
        estimated=False,
        outcome=outcome,
    )


async def test_a_usage_job_is_an_arq_job_queued_once_per_request(arq_redis: ArqRedis) -> None:
    for outcome in ("completed", "error"):  # the second record of the request loses
        recorder = UsageRecorder(arq_redis, queue_name="arq:queue", buffer=10)
        recorder.start()
        recorder.record(record("r1", outcome))
        await recorder.stop()

    assert await arq_redis.zrange("arq:queue", 0, -1) == [b"usage:r1"]
    job = Job("usage:r1", arq_redis, _deserializer=arq_redis.job_deserializer)
    assert await job.status() is JobStatus.queued
    info = await job.info()
    assert info is not None
    assert (info.function, info.args) == (JOB_NAME, (record("r1").as_job_argument(),))
    assert 0 < await arq_redis.pttl("arq:job:usage:r1") <= arq_redis.expires_extra_ms
