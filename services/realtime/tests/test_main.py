"""The service as a whole: readiness follows Redis, and the replica repairs itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chorus_client import RoomClient
from chorus_common.events import EventBus, room_channel
from chorus_common.redis_client import create_redis
from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis

from .conftest import ReplicaFactory


async def _status(http: httpx.AsyncClient, url: str) -> int:
    try:
        return (await http.get(f"{url}/readyz", timeout=5)).status_code
    except httpx.HTTPError:
        return 0


async def _until_status(http: httpx.AsyncClient, url: str, status: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await _status(http, url) != status:
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_redis_restart_readiness_503_then_200_and_rooms_resubscribe(
    private_redis: RunningRedis,
    make_replica: ReplicaFactory,
    tokens: TokenService,
    room: str,
    http: httpx.AsyncClient,
) -> None:
    replica = make_replica(private_redis.url)
    async with RoomClient([replica.url], room, tokens.issue(31)) as client:
        await client.wait_subscribed()
        await asyncio.to_thread(private_redis.stop)
        await _until_status(http, replica.url, 503, timeout=10)
        body = (await http.get(f"{replica.url}/readyz")).json()
        assert body["checks"]["pubsub"]["ok"] is False
        await asyncio.to_thread(private_redis.start)
        await _until_status(http, replica.url, 200, timeout=20)
        # The replica resubscribed by itself: an event published now reaches the client
        # still connected to it (whether or not it also reconnected meanwhile).
        redis = create_redis(private_redis.url, client_name="t")
        try:
            await EventBus(redis, history_size=1000, history_ttl=86_400).publish(
                room_channel(room), "message", {"message": "after restart"}, sender="t"
            )
            await client.wait_for(lambda: "after restart" in client.messages())
        finally:
            await redis.aclose()
    metrics = (await http.get(f"{replica.url}/metrics")).text
    assert 'chorus_realtime_pubsub_reconnects_total{reason="error"}' in metrics


async def test_metrics_are_exported(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    http: httpx.AsyncClient,
) -> None:
    replica = make_replica(redis_url)
    async with RoomClient([replica.url], room, tokens.issue(32)) as client:
        await client.wait_subscribed()
        await client.say("hello")
        await client.wait_for(lambda: "hello" in client.messages())
        text = (await http.get(f"{replica.url}/metrics")).text
    for name in (
        'chorus_realtime_connections{transport="ws"} 1.0',
        "chorus_realtime_channels ",
        'chorus_realtime_messages_in_total{type="message"} 1.0',
        "chorus_realtime_messages_out_total ",
        "chorus_realtime_fanout_latency_seconds_bucket",
        "chorus_realtime_slow_client_disconnects_total 0.0",
        "chorus_realtime_canary_lag_seconds ",
        "chorus_realtime_canary_failures_total ",
        "chorus_realtime_recoveries_total",
        "chorus_realtime_rejected_total",
    ):
        assert name in text, name


async def test_a_socket_opened_while_redis_is_down_is_told_to_retry(
    private_redis: RunningRedis, make_replica: ReplicaFactory, tokens: TokenService, room: str
) -> None:
    replica = make_replica(private_redis.url)
    await asyncio.to_thread(private_redis.stop)
    url = replica.url.replace("http", "ws") + f"/ws/{room}"
    token = tokens.issue(41)
    async with connect(url, subprotocols=["chorus.v1", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
