"""Rooms people own, through the ingress with two realtime replicas.

An outsider cannot join, resume, subscribe to, post into, look at the presence of, or read
the history of a private room, while its members can; a member removed stops receiving on
every socket, on both replicas, within a second — and, proved causally, receives nothing
published after the removal committed; a direct-message room is its two people's only, and
opening it twice gives the same room.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import httpx
import redis.asyncio as aioredis

from chorus_client import EventStreamClient, RoomClient
from chorus_common.events import EventBus, parse_stream_id, room_channel
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import Account, sign_up
from chorus_e2e.chat import history
from chorus_e2e.polling import eventually


def _room(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


async def _private_room(http: httpx.AsyncClient, owner: Account, *members: Account) -> str:
    """A private room of ``owner``, with ``members`` invited by e-mail and accepted."""
    name = _room("private")
    created = await http.post(
        "/api/rooms", json={"name": name, "visibility": "private"}, headers=owner.auth
    )
    assert created.status_code == 201, created.text
    for member in members:
        invited = await http.post(
            f"/api/rooms/{name}/invitations", json={"email": member.email}, headers=owner.auth
        )
        assert invited.status_code == 201, invited.text
        accepted = await http.post(
            f"/api/invitations/{invited.json()['id']}/accept", headers=member.auth
        )
        assert accepted.status_code == 200, accepted.text
    return name


async def _refused(ingress: str, room: str, token: str, since: str | None = None) -> RoomClient:
    client = RoomClient([ingress], room, token, since=since, reconnect=False)
    await client.start()
    await client.wait_for(lambda: bool(client.closes))
    await client.stop()
    return client


async def test_an_outsider_meets_closed_doors_where_members_walk_in(
    ingress: str, http: httpx.AsyncClient
) -> None:
    ada, bob, eve = [await sign_up(http, n) for n in ("ada", "bob", "eve")]
    room = await _private_room(http, ada, bob)
    async with RoomClient([ingress], room, bob.token) as inside:
        await inside.wait_subscribed()
        await inside.say("members only", ref="m1")
        await inside.wait_for(lambda: bool(inside.of_type("ack")))
        message_id = inside.of_type("ack")[0]["id"]

        # Joining and resuming: closed 4403, with nothing of the room before it.
        for since in (None, message_id):
            refused = await _refused(ingress, room, eve.token, since)
            assert refused.closes[0].code == 4403, refused.closes
            assert not refused.events
            assert not refused.of_type("subscribed")
        # Subscribing and posting from another room's socket: refused, the socket stays.
        async with RoomClient([ingress], _room("lobby"), eve.token) as lobby:
            await lobby.wait_subscribed()
            await lobby.send({"type": "subscribe", "channel": room_channel(room)})
            await lobby.send(
                {"type": "message", "message": "let me in", "channel": room_channel(room)}
            )
            await lobby.wait_for(lambda: len(lobby.of_type("error")) == 2)
            assert [e["data"]["code"] for e in lobby.of_type("error")] == [
                "forbidden",
                "not_subscribed",
            ]
            assert not lobby.closes
        # Presence, history, the room itself.
        presence = await http.get(f"/rooms/{room}/presence", headers=eve.auth)
        assert presence.status_code == 403
        stored = await http.get(f"/api/rooms/{room}/messages", headers=eve.auth)
        assert stored.status_code == 403
        assert (await http.get(f"/api/rooms/{room}", headers=eve.auth)).status_code == 404

        # The members do all of it.
        seen = await http.get(f"/rooms/{room}/presence", headers=ada.auth)
        assert seen.json()["members"] == [{"user_id": str(bob.id), "name": "Bob", "connections": 1}]
        persisted = await eventually(
            lambda: history(http, room, ada.token),
            until=lambda items: len(items) == 1,
            what="the member's message stored",
        )
        assert persisted[0]["data"] == {"message": "members only", "name": "Bob"}
        async with RoomClient([ingress], room, ada.token, since=message_id) as resumed:
            subscribed = await resumed.wait_subscribed()
            assert subscribed["recovered"] is True
    assert not [e for e in inside.events if e.get("from") == str(eve.id)]


def _closed(client: RoomClient) -> Callable[[], bool]:
    return lambda: bool(client.closes)


async def _sockets_on_both_replicas(
    stack: Stack, ingress: str, room: str, account: Account
) -> list[RoomClient]:
    """Sockets of ``account`` in ``room`` through the ingress, until both replicas hold one."""
    client = aioredis.Redis.from_url(stack.redis_url)
    sockets: list[RoomClient] = []
    try:
        for _ in range(8):
            socket = RoomClient([ingress], room, account.token)
            await socket.start()
            await socket.wait_subscribed()
            sockets.append(socket)
            fields = [f.decode() for f in await client.hkeys(f"chorus:presence:room:{room}")]
            mine = {f.rsplit("|", 1)[0] for f in fields if f.endswith(f"|{account.id}")}
            if len(mine) == 2:
                return sockets
        msg = "the ingress never put a socket on the second replica"
        raise AssertionError(msg)
    finally:
        await client.aclose()


async def test_a_removed_member_stops_receiving_everywhere_within_a_second(
    stack: Stack, ingress: str, http: httpx.AsyncClient
) -> None:
    ada, bob = await sign_up(http, "ada"), await sign_up(http, "bob")
    room = await _private_room(http, ada, bob)
    removed = await _sockets_on_both_replicas(stack, ingress, room, bob)
    owner = RoomClient([ingress], room, ada.token)
    await owner.start()
    await owner.wait_subscribed()
    redis = aioredis.Redis.from_url(stack.redis_url)
    shared = stack.options.shared_env  # every publisher trims and expires alike
    bus = EventBus(
        redis,
        history_size=int(shared.get("HISTORY_SIZE", "1000")),
        history_ttl=int(shared.get("HISTORY_TTL", "86400")),
    )
    published: list[tuple[float, str]] = []  # (when the publish started, its stream id)
    stop = asyncio.Event()

    async def numbered() -> None:
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            done = await bus.publish(room_channel(room), "message", {"n": n}, sender="e2e")
            published.append((started, done.id))
            n += 1
            await asyncio.sleep(0.003)

    publisher = asyncio.create_task(numbered())
    try:
        await owner.wait_for(lambda: len(owner.events) > 30)
        response = await http.delete(f"/api/rooms/{room}/members/{bob.id}", headers=ada.auth)
        committed = time.monotonic()
        assert response.status_code == 204, response.text
        for socket in removed:
            await socket.wait_for(_closed(socket), timeout=1.0)
        closed_within = time.monotonic() - committed
        await owner.wait_for(
            lambda: len([p for p in published if p[0] > committed]) > 50, timeout=10
        )
    finally:
        stop.set()
        await publisher
        await owner.stop()
        for socket in removed:
            await socket.stop()
        await redis.aclose()
    assert closed_within < 1.0
    first_after = min(parse_stream_id(i) for started, i in published if started > committed)
    for socket in removed:
        assert socket.closes[0].code == 4403
        received = [parse_stream_id(e["id"]) for e in socket.events if e["type"] == "message"]
        assert received, "the member received the room before the removal"
        assert max(received) < first_after, "an event published after the removal arrived"
        assert socket.stopped
    # The room went on for those still in it.
    assert max(parse_stream_id(e["id"]) for e in owner.events) >= first_after


async def test_a_direct_message_room_is_its_two_peoples(
    ingress: str, http: httpx.AsyncClient
) -> None:
    ada, bob, eve = [await sign_up(http, n) for n in ("ada", "bob", "eve")]
    first = await http.post("/api/dms", json={"user_id": bob.id}, headers=ada.auth)
    second = await http.post("/api/dms", json={"user_id": ada.id}, headers=bob.auth)
    assert (first.status_code, second.status_code) == (201, 200)
    room = first.json()["name"]
    assert second.json()["name"] == room
    async with (
        EventStreamClient([ingress], bob.token) as bobs_events,
        RoomClient([ingress], room, ada.token) as conversation,
    ):
        await bobs_events.wait_for(lambda: bool(bobs_events.of_type("subscribed")))
        await conversation.wait_subscribed()
        await conversation.say("just between us")
        await bobs_events.wait_for(lambda: bool(bobs_events.of_type("dm.message")))
    [told] = bobs_events.of_type("dm.message")
    assert told["data"]["room"] == room
    assert told["data"]["preview"] == "just between us"
    assert (await _refused(ingress, room, eve.token)).closes[0].code == 4403
    assert (await http.get(f"/api/rooms/{room}/messages", headers=eve.auth)).status_code == 403
    stored = await eventually(
        lambda: history(http, room, bob.token),
        until=lambda items: len(items) == 1,
        what="the direct message stored",
    )
    assert stored[0]["data"]["message"] == "just between us"
    conversations = (await http.get("/api/dms", headers=bob.auth)).json()["items"]
    assert [(c["room"], c["peer"]["id"], c["unread"]) for c in conversations] == [(room, ada.id, 1)]
