"""The worker follows the shared settings: it runs ``ARQ_QUEUE_NAME`` and publishes with
``HISTORY_SIZE``/``HISTORY_TTL``, as every other service enqueues and publishes."""

from __future__ import annotations

from arq.jobs import Job

from chorus_common.events import EventBus, stream_key, user_channel
from chorus_devstack.servers import RunningSmtpSink
from chorus_schema.models import User
from chorus_worker.transport.queue import create_queue_redis

from .harness import Harness, eventually, running_worker

QUEUE = "worker-tests:shared-queue"
HISTORY_SIZE = 5
HISTORY_TTL = 120
#: Stream nodes of 4 entries: ``MAXLEN ~ 5`` then keeps fewer than 9.
NODE_ENTRIES = 4


async def test_jobs_run_from_the_configured_queue_and_publish_with_the_configured_history(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    settings = harness.settings.model_copy(
        update={"arq_queue_name": QUEUE, "history_size": HISTORY_SIZE, "history_ttl": HISTORY_TTL}
    )
    async with harness.sessions.begin() as session:
        user = User(email="shared@example.com", full_name="Shared", password_hash="x" * 60)
        session.add(user)
    channel = user_channel(user.id)
    # An overfilled, immortal history, in small nodes: only the worker's own settings can
    # trim and expire it.
    previous = (await harness.queue.config_get("stream-node-max-entries"))[
        "stream-node-max-entries"
    ]
    await harness.queue.config_set("stream-node-max-entries", NODE_ENTRIES)
    queue = create_queue_redis(settings)
    try:
        for i in range(10 * HISTORY_SIZE):
            body = EventBus.encode(channel, "x", {"i": i}, "t")
            await harness.queue.xadd(stream_key(channel), {"e": body})
        await harness.queue.persist(stream_key(channel))
        async with running_worker(settings):
            job = await queue.enqueue_job("send_welcome_email", user.id, _job_id="shared")
            assert job is not None
            assert await harness.queue.zscore(QUEUE, "shared") is not None
            shared = Job("shared", queue, _deserializer=queue.job_deserializer)
            info = await eventually(shared.result_info, what="the job's result")
    finally:
        await harness.queue.config_set("stream-node-max-entries", previous)
        await queue.aclose()

    assert info.result["status"] == "sent"
    assert await harness.queue.xlen(stream_key(channel)) < HISTORY_SIZE + NODE_ENTRIES
    assert 0 < await harness.queue.ttl(stream_key(channel)) <= HISTORY_TTL
