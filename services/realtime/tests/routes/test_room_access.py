"""Rooms people own, at realtime's doors and inside: two replicas on real Redis.

The access lists are written here exactly as the api writes them
(``chorus_common.rooms.RoomDirectory.write``, with the event that takes access away).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from chorus_client import EventStreamClient, RoomClient
from chorus_common.events import EventBus, parse_stream_id, room_channel
from chorus_common.rooms import (
    LOADED_KEY,
    RoomAcl,
    RoomDirectory,
    RoomState,
    dm_room,
    member_removed_event,
    room_deleted_event,
    room_updated_event,
)
from chorus_common.tokens import TokenService
from chorus_devstack.servers import RunningRedis

from ..conftest import Replica, ReplicaFactory

#: The replicas re-check their rooms' access every second here.
RECHECK = {"ROOM_ACCESS_RECHECK_SECONDS": "1"}


@pytest.fixture(scope="module")
def replicas(redis_server: RunningRedis, module_tmp: Path) -> Iterator[tuple[Replica, Replica]]:
    """Two replicas that re-check room access every second."""
    one = Replica("rooms-1", redis_server.url, module_tmp / "logs", RECHECK).start()
    two = Replica("rooms-2", redis_server.url, module_tmp / "logs", RECHECK).start()
    yield one, two
    one.stop()
    two.stop()


@pytest.fixture
async def directory(redis: Redis) -> RoomDirectory:
    """The access lists, as the api writes them."""
    return RoomDirectory(redis)


class People:
    """Fresh user ids with tokens (and display names)."""

    def __init__(self, tokens: TokenService, next_id: Callable[[], str]) -> None:
        self.tokens = tokens
        self.next_id = next_id

    def new(self, name: str) -> tuple[str, str]:
        """A user id and a token carrying ``name``."""
        user = self.next_id()
        return user, self.tokens.issue(user, name=name)


@pytest.fixture
def people(tokens: TokenService, user_id: Callable[[], str]) -> People:
    return People(tokens, user_id)


async def _private(directory: RoomDirectory, room: str, version: int, *members: str) -> None:
    acl = RoomAcl(RoomState.PRIVATE, version, dict.fromkeys(members, "member"))
    await directory.write(room, acl)


async def _refusal(url: str, room: str, token: str, since: str | None = None) -> RoomClient:
    client = RoomClient([url], room, token, since=since, reconnect=False)
    await client.start()
    await client.wait_for(lambda: bool(client.closes))
    await client.stop()
    return client


def _messages(client: RoomClient) -> list[str]:
    return [str(f["id"]) for f in client.events if f["type"] == "message"]


async def test_an_outsider_cannot_join_resume_subscribe_write_or_look(
    replicas: tuple[Replica, Replica],
    directory: RoomDirectory,
    people: People,
    room: str,
    http: httpx.AsyncClient,
    bus: EventBus,
) -> None:
    one, two = replicas
    member, member_token = people.new("Ada")
    _, outsider_token = people.new("Eve")
    await _private(directory, room, 1, member)
    async with RoomClient([one.url], room, member_token) as inside:
        await inside.wait_subscribed()
        await inside.say("secret plans")
        await inside.wait_for(lambda: len(inside.messages()) == 1)
        first_id = inside.events[0]["id"]

        # Joining, and resuming from an id: closed 4403 after an error frame, nothing sent.
        for since in (None, first_id):
            refused = await _refusal(two.url, room, outsider_token, since)
            assert refused.closes[0].code == 4403
            assert [f["data"]["code"] for f in refused.of_type("error")] == ["forbidden"]
            assert refused.events == [] or all(f["type"] == "error" for f in refused.frames)
            assert not refused.of_type("subscribed")

        # Subscribing from another room: an error frame; the socket stays.
        async with RoomClient([two.url], f"{room}-lobby", outsider_token) as lobby:
            await lobby.wait_subscribed()
            await lobby.send({"type": "subscribe", "channel": room_channel(room)})
            await lobby.wait_for(lambda: bool(lobby.of_type("error")))
            [error] = lobby.of_type("error")
            assert error["data"]["code"] == "forbidden"
            assert error["channel"] == room_channel(room)
            await lobby.send({"type": "message", "message": "x", "channel": room_channel(room)})
            await lobby.send({"type": "ping"})
            await lobby.wait_for(lambda: bool(lobby.of_type("pong")))
            assert lobby.of_type("error")[-1]["data"]["code"] == "not_subscribed"

        # Presence: 403 for the outsider, names for the member.
        seen = await http.get(
            f"{one.url}/rooms/{room}/presence",
            headers={"Authorization": f"Bearer {outsider_token}"},
        )
        assert seen.status_code == 403
        inside_view = await http.get(
            f"{two.url}/rooms/{room}/presence", headers={"Authorization": f"Bearer {member_token}"}
        )
        assert inside_view.json()["members"] == [
            {"user_id": member, "name": "Ada", "connections": 1}
        ]
    history = await bus.history(room_channel(room), "0-0")
    assert sum(1 for e in history.events if b'"type":"message"' in e) == 1
    metrics = (await http.get(f"{two.url}/metrics")).text
    assert 'chorus_realtime_room_refusals_total{action="join",reason="forbidden"} 2.0' in metrics
    assert (
        'chorus_realtime_room_refusals_total{action="subscribe",reason="forbidden"} 1.0' in metrics
    )


async def test_what_someone_says_carries_their_name(
    replicas: tuple[Replica, Replica], people: People, room: str
) -> None:
    one, two = replicas
    ada, ada_token = people.new("Ada Lovelace")
    _, bob_token = people.new("Bob")
    async with RoomClient([one.url], room, bob_token) as bob:
        await bob.wait_subscribed()
        async with RoomClient([two.url], room, ada_token) as ada_client:
            await ada_client.wait_subscribed()
            await ada_client.say("hello")
            await bob.wait_for(lambda: bool(bob.messages()))
    message = next(f for f in bob.events if f["type"] == "message")
    assert message["data"] == {"message": "hello", "name": "Ada Lovelace"}
    assert message["from"] == ada
    joined = [f for f in bob.events if f["type"] == "join" and f["data"]["user_id"] == ada]
    assert joined[0]["data"]["name"] == "Ada Lovelace"


async def test_a_removed_member_stops_receiving_on_both_replicas_at_once(
    replicas: tuple[Replica, Replica],
    directory: RoomDirectory,
    people: People,
    room: str,
    bus: EventBus,
) -> None:
    one, two = replicas
    leaving, leaving_token = people.new("Leaving")
    staying, staying_token = people.new("Staying")
    await _private(directory, room, 10, leaving, staying)
    channel = room_channel(room)
    clients = [
        RoomClient([one.url], room, leaving_token),
        RoomClient([two.url], room, leaving_token),
        RoomClient([two.url], room, staying_token),
    ]
    for client in clients:
        await client.start()
        await client.wait_subscribed()
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            await bus.publish(channel, "message", {"message": f"n{n}"}, sender="server")
            n += 1
            await asyncio.sleep(0.002)

    publisher = asyncio.create_task(publish())
    try:
        await clients[2].wait_for(lambda: len(clients[2].messages()) > 20)
        removal = await directory.write(
            room,
            RoomAcl(RoomState.PRIVATE, 11, {staying: "member"}),
            event=member_removed_event(leaving, reason="removed", private=True, version=11),
            bus=bus,
        )
        assert removal is not None
        removed_at = asyncio.get_running_loop().time()
        for client in clients[:2]:
            await client.wait_for(lambda c=client: bool(c.closes), timeout=1.0)
        assert asyncio.get_running_loop().time() - removed_at < 1.0
        # Those still in keep receiving well past the removal.
        await clients[2].wait_for(
            lambda: (
                parse_stream_id(_messages(clients[2])[-1]) > parse_stream_id(removal)
                and len(
                    [
                        i
                        for i in _messages(clients[2])
                        if parse_stream_id(i) > parse_stream_id(removal)
                    ]
                )
                > 20
            )
        )
    finally:
        stop.set()
        await publisher
        for client in clients:
            await client.stop()
    for client in clients[:2]:
        assert client.closes[0].code == 4403
        assert client.closes[0].reason == "removed from the room"
        [gone] = [f for f in client.frames if f.get("type") == "unsubscribed"]
        assert gone["reason"] == "removed"
        received = _messages(client)
        assert received, "the member received the room before the removal"
        # Nothing published after the removal reached them: every id is below it.
        assert parse_stream_id(received[-1]) < parse_stream_id(removal)
        assert client.stopped  # 4403 is final: no reconnect
    assert any(f.get("id") == removal for f in clients[2].events)


async def test_made_private_and_deleted_rooms_drop_who_they_must(
    replicas: tuple[Replica, Replica],
    directory: RoomDirectory,
    people: People,
    room: str,
    bus: EventBus,
) -> None:
    one, two = replicas
    member, member_token = people.new("Member")
    visitor, visitor_token = people.new("Visitor")
    await directory.write(room, RoomAcl(RoomState.PUBLIC, 20, {member: "owner"}))
    lobby = f"{room}-lobby"
    async with (
        RoomClient([one.url], room, member_token) as owner_client,
        RoomClient([two.url], lobby, visitor_token) as visitor_client,
    ):
        await owner_client.wait_subscribed()
        await visitor_client.wait_subscribed()
        # The visitor follows the public room from another room's socket.
        await visitor_client.send({"type": "subscribe", "channel": room_channel(room)})
        await visitor_client.wait_for(lambda: len(visitor_client.of_type("subscribed")) == 2)
        made_private = await directory.write(
            room,
            RoomAcl(RoomState.PRIVATE, 21, {member: "owner"}),
            event=room_updated_event(
                visibility="private", topic=None, version=21, members=[member]
            ),
            bus=bus,
        )
        await visitor_client.wait_for(
            lambda: any(f.get("type") == "unsubscribed" for f in visitor_client.frames)
        )
        [gone] = [f for f in visitor_client.frames if f.get("type") == "unsubscribed"]
        assert gone == {"type": "unsubscribed", "channel": room_channel(room), "reason": "private"}
        assert not any(f.get("id") == made_private for f in visitor_client.events)
        await owner_client.wait_for(
            lambda: any(f.get("id") == made_private for f in owner_client.events)
        )
        assert not owner_client.closes
        # The visitor's own socket stays.
        await visitor_client.send({"type": "ping"})
        await visitor_client.wait_for(lambda: bool(visitor_client.of_type("pong")))
        # Deleted: everyone, members too.
        await directory.write(
            room,
            RoomAcl(RoomState.DELETED, 22, {}),
            event=room_deleted_event(version=22),
            bus=bus,
        )
        await owner_client.wait_for(lambda: bool(owner_client.closes), timeout=2)
    assert owner_client.closes[0].code == 4403
    assert owner_client.closes[0].reason == "the room was deleted"
    assert visitor not in {f["from"] for f in owner_client.events if f["type"] == "message"}


async def test_a_missed_event_is_bounded_and_writes_are_refused_in_redis(
    replicas: tuple[Replica, Replica],
    directory: RoomDirectory,
    people: People,
    room: str,
    redis: Redis,
    bus: EventBus,
) -> None:
    one, _ = replicas
    member, member_token = people.new("Member")
    await _private(directory, room, 30, member)
    async with RoomClient([one.url], room, member_token) as client:
        await client.wait_subscribed()
        # Removed without the event (as if this replica never received it).
        await _private(directory, room, 31)
        await client.say("@assistant still here?", ref="late")
        await client.send({"type": "typing"})
        await client.wait_for(lambda: len(client.of_type("error")) >= 2 or bool(client.closes))
        errors = [f["data"]["code"] for f in client.of_type("error")]
        assert errors[:2] == ["forbidden", "forbidden"]
        assert not client.of_type("ack")
        # The re-check (every second here) drops the socket within its bound.
        await client.wait_for(lambda: bool(client.closes), timeout=3)
    assert client.closes[0].code == 4403
    history = await bus.history(room_channel(room), "0-0")
    assert not any(b"still here?" in e for e in history.events)
    # Nor was the assistant asked: the trigger follows a write the rule let through.
    assert await redis.keys(f"arq:job:assistant:{room}:*") == []


async def test_nothing_is_let_in_while_the_access_lists_are_missing(
    private_redis: RunningRedis,
    make_replica: ReplicaFactory,
    tokens: TokenService,
    room: str,
    http: httpx.AsyncClient,
) -> None:
    replica = make_replica(private_redis.url, **RECHECK)
    token = tokens.issue("1", name="One")
    async with RoomClient([replica.url], room, token) as inside:
        await inside.wait_subscribed()
        # Redis lost the lists (restarted empty, say): nobody can tell which rooms are private.
        client = Redis.from_url(private_redis.url)
        try:
            await client.delete(LOADED_KEY)
        finally:
            await client.aclose()
        await inside.wait_for(lambda: bool(inside.closes), timeout=3)
    assert inside.closes[0].code == 1013
    refused = await _refusal(replica.url, room, token)
    assert refused.closes[0].code == 1013
    seen = await http.get(
        f"{replica.url}/rooms/{room}/presence", headers={"Authorization": f"Bearer {token}"}
    )
    assert seen.status_code == 503


async def test_a_direct_message_tells_the_other_person(
    replicas: tuple[Replica, Replica],
    directory: RoomDirectory,
    people: People,
) -> None:
    one, two = replicas
    ada, ada_token = people.new("Ada")
    bob, bob_token = people.new("Bob")
    room = dm_room(ada, bob)
    await _private(directory, room, 40, ada, bob)
    async with EventStreamClient([two.url], bob_token) as events:
        await events.wait_for(lambda: bool(events.of_type("subscribed")))
        async with RoomClient([one.url], room, ada_token) as dm:
            await dm.wait_subscribed()
            await dm.say("psst " + "x" * 300, ref="m1")
            await dm.wait_for(lambda: bool(dm.of_type("ack")))
            await events.wait_for(lambda: bool(events.of_type("dm.message")))
    [told] = events.of_type("dm.message")
    assert told["data"]["room"] == room
    assert told["data"]["user_id"] == ada
    assert told["data"]["name"] == "Ada"
    assert told["data"]["message_id"] == dm.of_type("ack")[0]["id"]
    assert told["data"]["preview"] == ("psst " + "x" * 300)[:140]
    # A name nobody registered as a direct message is nobody's: refused.
    stranger = os.urandom(2).hex()
    refused = await _refusal(one.url, dm_room(ada, 10**9 + int(stranger, 16)), ada_token)
    assert refused.closes[0].code == 4403
