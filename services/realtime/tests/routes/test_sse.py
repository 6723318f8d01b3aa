"""``/events``: a user's stream over SSE, with ``Last-Event-ID`` resume across replicas."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from chorus_client import EventStreamClient, RoomClient
from chorus_common.events import EventBus, user_channel
from chorus_common.tokens import TokenService

from ..conftest import Replica, ReplicaFactory


def metric_value(text: str, name: str, labels: str) -> float:
    """A labelled sample's value in a Prometheus exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_another_users_stream_is_403_and_no_token_is_401(
    pair: tuple[Replica, Replica], tokens: TokenService, http: httpx.AsyncClient
) -> None:
    one, _ = pair
    mine = {"Authorization": f"Bearer {tokens.issue(21)}"}
    response = await http.get(f"{one.url}/events/22", headers=mine)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    response = await http.get(f"{one.url}/events")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    response = await http.get(f"{one.url}/events?token=forged")
    assert response.status_code == 401


async def test_stream_headers_ids_and_resume_with_last_event_id(
    pair: tuple[Replica, Replica], tokens: TokenService, bus: EventBus, http: httpx.AsyncClient
) -> None:
    one, two = pair
    channel = user_channel(23)
    token = tokens.issue(23)
    async with EventStreamClient([one.url], token, path="/events/23") as client:
        await client.wait_for(lambda: bool(client.of_type("subscribed")))
        first = await bus.publish(channel, "order.created", {"order_id": 1}, sender="api")
        await client.wait_for(lambda: len(client.events) == 1)
        assert client.events[0]["id"] == first.id
        assert client.last_id == first.id
    for n in range(2, 5):
        await bus.publish(channel, "order.updated", {"order_id": n}, sender="api")
    # Resume on the other replica, by header; then by query parameter.
    async with EventStreamClient([two.url], token, last_event_id=first.id) as resumed:
        await resumed.wait_for(lambda: len(resumed.events) == 3)
        assert [e["data"]["order_id"] for e in resumed.events] == [2, 3, 4]
        assert resumed.of_type("subscribed")[0]["recovered"] is True
    async with http.stream(
        "GET", f"{two.url}/events?token={token}&last_event_id={first.id}"
    ) as response:
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        async for line in response.aiter_lines():
            lines.append(line)
            if sum(1 for item in lines if item.startswith("id: ")) == 3:
                break
    ids = [line.removeprefix("id: ") for line in lines if line.startswith("id: ")]
    assert len(ids) == 3
    assert ids == sorted(ids)


@pytest.mark.slow
async def test_sigkill_a_replica_the_sse_client_resumes_losing_nothing(
    make_replica: ReplicaFactory, redis_url: str, tokens: TokenService, bus: EventBus
) -> None:
    one = make_replica(redis_url)
    two = make_replica(redis_url)
    channel = user_channel(24)

    async def publish() -> list[str]:
        ids = []
        for n in range(1000):
            published = await bus.publish(channel, "order.updated", {"n": n}, sender="api")
            ids.append(published.id)
            await asyncio.sleep(0.002)
        return ids

    async with EventStreamClient([one.url, two.url], tokens.issue(24)) as client:
        await client.wait_for(lambda: bool(client.of_type("subscribed")))
        publisher = asyncio.create_task(publish())
        await client.wait_for(lambda: len(client.events) >= 250)
        await asyncio.to_thread(one.kill)
        ids = await publisher
        await client.wait_for(lambda: len(client.events) >= 1000, timeout=20)
        assert [e["id"] for e in client.events] == ids
        assert [e["data"]["n"] for e in client.events] == list(range(1000))
        assert client.connects == 2
        assert client.of_type("subscribed")[1]["recovered"] is True


async def test_too_many_connections_is_a_429_and_counts_sockets_too(
    limited: Replica, tokens: TokenService, http: httpx.AsyncClient, room: str
) -> None:
    # MAX_CONNECTIONS_PER_USER is 2 on this replica, WebSocket and SSE together.
    token = tokens.issue(40)
    auth = {"Authorization": f"Bearer {token}"}
    async with (
        EventStreamClient([limited.url], token) as first,
        RoomClient([limited.url], room, token) as second,
    ):
        await first.wait_for(lambda: bool(first.of_type("subscribed")))
        await second.wait_subscribed()
        refused = await http.get(f"{limited.url}/events", headers=auth)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_connections"
        metrics = (await http.get(f"{limited.url}/metrics")).text
        assert metric_value(metrics, "chorus_realtime_rejected_total", 'reason="user_connections"')
        async with RoomClient([limited.url], room, token, reconnect=False) as third:
            await third.wait_for(lambda: bool(third.closes))
        assert third.closes[0].code == 1008
        assert not first.closes
        assert not second.closes
        # Another user is not affected.
        async with http.stream(
            "GET", f"{limited.url}/events", headers={"Authorization": f"Bearer {tokens.issue(41)}"}
        ) as other:
            assert other.status_code == 200
    # Closing gives the slots back: the same user streams again.

    async def accepted() -> bool:
        async with http.stream("GET", f"{limited.url}/events", headers=auth) as response:
            return response.status_code == 200

    deadline = asyncio.get_running_loop().time() + 10
    while not await accepted():
        assert asyncio.get_running_loop().time() < deadline, "the slots were never released"
        await asyncio.sleep(0.1)
