"""Usage jobs as arq sees them (one per request), and what happens when Redis cannot take them."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from prometheus_client import REGISTRY

from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import create_redis
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


def dropped() -> float:
    """Records dropped so far in this process."""
    return REGISTRY.get_sample_value("chorus_gateway_usage_records_dropped_total") or 0.0


@pytest.fixture
async def private_arq(private_redis: RunningRedis) -> AsyncIterator[ArqRedis]:
    """An arq client of the test's own Redis, built as the gateway builds it."""
    redis = create_redis(private_redis.url, client_name="usage-test")
    yield ArqRedis(connection_pool=redis.connection_pool)
    await redis.aclose()


async def test_a_full_buffer_drops_at_once_and_says_what_it_dropped(
    arq_redis: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = UsageRecorder(arq_redis, queue_name="arq:queue", buffer=2)  # not draining
    before = dropped()
    for n in range(3):
        recorder.record(record(f"full-{n}"))  # returns at once, whatever the buffer holds
    assert dropped() == before + 1
    [line] = [r for r in caplog.records if r.getMessage() == "usage record dropped (buffer full)"]
    assert line.usage == record("full-2").as_job_argument()  # type: ignore[attr-defined]
    await recorder.stop(grace=0)  # nothing drains it: the two buffered are dropped too
    assert dropped() == before + 3
    assert await arq_redis.zrange("arq:queue", 0, -1) == []


async def test_a_record_redis_will_not_take_is_dropped_after_its_attempts_and_counted(
    private_redis: RunningRedis, private_arq: ArqRedis, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = UsageRecorder(private_arq, queue_name="arq:queue", buffer=10)
    recorder.start()
    before = dropped()
    try:
        await asyncio.to_thread(private_redis.stop)
        recorder.record(record("lost"))
        async with asyncio.timeout(30):
            while dropped() < before + 1:
                await asyncio.sleep(0.05)
    finally:
        await recorder.stop(grace=0)
    [line] = [r for r in caplog.records if r.getMessage().startswith("usage record dropped (")]
    assert "ConnectionError" in line.getMessage()
    assert line.usage["request_id"] == "lost"  # type: ignore[attr-defined]
    assert dropped() == before + 1


async def test_stop_enqueues_what_is_buffered_before_the_process_ends(
    private_redis: RunningRedis, private_arq: ArqRedis
) -> None:
    recorder = UsageRecorder(private_arq, queue_name="arq:queue", buffer=100)
    recorder.start()
    before = dropped()
    # Redis hangs: the enqueuing tasks are stuck on their first records, the rest wait in
    # the buffer when shutdown begins.
    private_redis.process.signal(signal.SIGSTOP)
    try:
        for n in range(40):
            recorder.record(record(f"flush-{n}"))
        stopping = asyncio.create_task(recorder.stop(grace=5))
        await asyncio.sleep(0)  # stop() is now waiting for the buffer
        assert not stopping.done()
    finally:
        private_redis.process.signal(signal.SIGCONT)
    await stopping
    queued = await private_arq.zrange("arq:queue", 0, -1)
    assert sorted(queued) == sorted(f"usage:flush-{n}".encode() for n in range(40))
    assert dropped() == before
