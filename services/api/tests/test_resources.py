"""The api's resources follow the shared settings: the job queue and the event history.

``ARQ_QUEUE_NAME`` must move the api's enqueues *and* its job status lookups (arq finds a
queued job in the queue's sorted set); ``HISTORY_SIZE``/``HISTORY_TTL`` must be what the
api's publishes trim and expire a channel with, as every other publisher does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from arq.connections import ArqRedis

from chorus_api.main import create_app
from chorus_api.settings import ApiSettings
from chorus_common.events import EventBus, stream_key, user_channel
from chorus_devstack.testing import base_url, serve_app

from .support import new_account

QUEUE = "api-tests:shared-queue"
HISTORY_SIZE = 5
HISTORY_TTL = 120
#: Stream nodes of 4 entries (this package's own Redis): ``MAXLEN ~ 5`` then keeps < 9.
NODE_ENTRIES = 4


@pytest.fixture
async def custom_api(settings: ApiSettings, arq: ArqRedis) -> AsyncIterator[httpx.AsyncClient]:
    """The api with its own queue and history settings, on small stream nodes."""
    custom = settings.model_copy(
        update={"arq_queue_name": QUEUE, "history_size": HISTORY_SIZE, "history_ttl": HISTORY_TTL}
    )
    previous = (await arq.config_get("stream-node-max-entries"))["stream-node-max-entries"]
    await arq.config_set("stream-node-max-entries", NODE_ENTRIES)
    try:
        async with (
            serve_app(create_app(custom)) as server,
            httpx.AsyncClient(base_url=base_url(server), trust_env=False, timeout=30) as client,
        ):
            yield client
    finally:
        await arq.config_set("stream-node-max-entries", previous)


async def test_jobs_are_enqueued_and_looked_up_on_the_configured_queue(
    custom_api: httpx.AsyncClient, arq: ArqRedis
) -> None:
    account = await new_account(custom_api)
    job_id = f"welcome:{account.id}"
    assert await arq.zscore(QUEUE, job_id) is not None
    assert await arq.zscore("arq:queue", job_id) is None
    status = await custom_api.get(f"/api/jobs/{job_id}", headers=account.headers)
    assert status.status_code == 200
    assert status.json()["status"] == "queued"


async def test_events_are_published_with_the_configured_history(
    custom_api: httpx.AsyncClient, arq: ArqRedis
) -> None:
    account = await new_account(custom_api)
    channel = user_channel(account.id)
    # An overfilled, immortal history: only the api's own settings can trim and expire it.
    for i in range(10 * HISTORY_SIZE):
        await arq.xadd(stream_key(channel), {"e": EventBus.encode(channel, "x", {"i": i}, "t")})
    await arq.persist(stream_key(channel))

    response = await custom_api.post(
        "/api/orders",
        json={"item": "ink", "quantity": 1, "amount_cents": 100},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text

    assert await arq.xlen(stream_key(channel)) < HISTORY_SIZE + NODE_ENTRIES
    assert 0 < await arq.ttl(stream_key(channel)) <= HISTORY_TTL
