"""The room access rule, its copy in Redis, guarded publishing and access events."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import orjson
import pytest
from redis.asyncio import Redis

from chorus_common.events import CLUSTER, EventBus, pubsub_channel, room_channel, stream_key
from chorus_common.redis_client import create_cluster, create_redis
from chorus_common.rooms import (
    Access,
    DirectoryUnavailableError,
    OpenRooms,
    Revocation,
    RoomAcl,
    RoomDirectory,
    RoomState,
    Verdict,
    dm_peer,
    dm_room,
    member_removed_event,
    revocation,
    room_deleted_event,
    room_updated_event,
)
from chorus_common.settings import parse_cluster_seeds
from chorus_devstack.servers import RunningRedis, RunningRedisCluster


@pytest.fixture
async def redis(redis_server: RunningRedis) -> AsyncIterator[Redis]:
    client = create_redis(redis_server.url, client_name="test-rooms", socket_timeout=None)
    yield client
    await client.aclose()


@pytest.fixture
async def directory(redis: Redis) -> RoomDirectory:
    rooms = RoomDirectory(redis)
    await rooms.mark_loaded()
    return rooms


@pytest.fixture
def room() -> str:
    return f"r-{os.urandom(5).hex()}"


def _acl(state: RoomState, version: int, **members: str) -> RoomAcl:
    return RoomAcl(state, version, {user.removeprefix("u"): role for user, role in members.items()})


async def test_a_room_known_only_by_name_is_open_but_a_direct_message_name_is_not(
    directory: RoomDirectory, room: str
) -> None:
    assert await directory.check(room, "1") == Access(Verdict.OPEN, 0)
    assert await directory.check(dm_room(1, 2), "1") == Access(Verdict.DENIED, 0)


async def test_private_rooms_admit_their_members_only(directory: RoomDirectory, room: str) -> None:
    await directory.write(room, _acl(RoomState.PRIVATE, 3, u1="owner", u2="member"))
    assert await directory.check(room, "1") == Access(Verdict.MEMBER, 3)
    assert await directory.check(room, "2") == Access(Verdict.MEMBER, 3)
    assert (await directory.check(room, "3")).allowed is False
    version, verdicts = await directory.check_many(room, ["1", "3", "2"])
    assert version == 3
    assert verdicts == {"1": Verdict.MEMBER, "3": Verdict.DENIED, "2": Verdict.MEMBER}


async def test_public_rooms_admit_everyone_and_deleted_ones_nobody(
    directory: RoomDirectory, room: str
) -> None:
    await directory.write(room, _acl(RoomState.PUBLIC, 1, u1="owner"))
    assert (await directory.check(room, "1")).verdict is Verdict.MEMBER
    assert (await directory.check(room, "9")).verdict is Verdict.OPEN
    await directory.write(room, _acl(RoomState.DELETED, 2, u1="owner"))
    assert (await directory.check(room, "1")).verdict is Verdict.DENIED
    assert (await directory.check(room, "9")).verdict is Verdict.DENIED


async def test_an_older_write_never_replaces_a_newer_one_unless_forced(
    directory: RoomDirectory, room: str
) -> None:
    await directory.write(room, _acl(RoomState.PRIVATE, 5, u1="owner"))
    await directory.write(room, _acl(RoomState.PRIVATE, 4, u1="owner", u2="member"))
    await directory.write(room, _acl(RoomState.PRIVATE, 5, u1="owner", u2="member"))
    assert (await directory.check(room, "2")).verdict is Verdict.DENIED
    assert await directory.versions([room, "never-written"]) == {room: 5, "never-written": 0}
    await directory.write(room, _acl(RoomState.PRIVATE, 4, u1="owner", u2="member"), force=True)
    assert await directory.check(room, "2") == Access(Verdict.MEMBER, 4)


async def test_large_access_lists_are_written_whole(directory: RoomDirectory, room: str) -> None:
    members = {str(n): "member" for n in range(1, 1001)}
    await directory.write(room, RoomAcl(RoomState.PRIVATE, 1, members))
    version, verdicts = await directory.check_many(room, ["1", "500", "1000", "1001"])
    assert set(verdicts.values()) == {Verdict.MEMBER, Verdict.DENIED}
    assert verdicts["1001"] is Verdict.DENIED
    assert version == 1
    smaller = {str(n): "member" for n in range(1, 11)}
    await directory.write(room, RoomAcl(RoomState.PRIVATE, 2, smaller))
    assert (await directory.check(room, "500")).verdict is Verdict.DENIED


async def test_a_write_publishes_its_event_in_the_same_step(
    directory: RoomDirectory, redis: Redis, room: str
) -> None:
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    channel = room_channel(room)
    pubsub = redis.pubsub()
    await pubsub.subscribe(pubsub_channel(channel))
    try:
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        event = member_removed_event(2, reason="removed", private=True, version=7)
        event_id = await directory.write(
            room, _acl(RoomState.PRIVATE, 7, u1="owner"), event=event, bus=bus
        )
        assert event_id is not None
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        live = orjson.loads(message["data"])
        assert live["id"] == event_id
        assert live["type"] == "member.removed"
        assert live["data"] == {"user_id": "2", "reason": "removed", "private": True, "version": 7}
        # A stale write changes nothing and announces nothing.
        stale = await directory.write(
            room, _acl(RoomState.PRIVATE, 6, u1="owner"), event=event, bus=bus
        )
        assert stale is None
        assert await redis.xlen(stream_key(channel)) == 1
    finally:
        await pubsub.aclose()


async def test_guarded_publish_refuses_in_redis_itself(
    directory: RoomDirectory, redis: Redis, room: str
) -> None:
    bus = EventBus(redis, history_size=1000, history_ttl=86_400)
    channel = room_channel(room)
    await directory.write(room, _acl(RoomState.PRIVATE, 1, u1="owner"))
    refused = await directory.publish(bus, room, user="2", type_="message", data={"message": "x"})
    assert refused is None
    assert await redis.xlen(stream_key(channel)) == 0
    published = await directory.publish(
        bus, room, user="1", type_="message", data={"message": "hi"}
    )
    assert published is not None
    stored = await bus.history(channel, "0-0")
    assert [orjson.loads(e)["id"] for e in stored.events] == [published.id]
    assert orjson.loads(published.payload)["data"] == {"message": "hi"}
    typing = await directory.publish(
        bus, room, user="1", type_="typing", data={"user_id": "1"}, durable=False
    )
    assert typing is not None
    assert typing.id == ""
    assert orjson.loads(typing.payload)["id"] is None
    assert await redis.xlen(stream_key(channel)) == 1


async def test_nothing_is_let_in_while_the_lists_are_not_loaded(
    private_redis: RunningRedis, room: str
) -> None:
    client = create_redis(private_redis.url, client_name="test-rooms-unloaded")
    try:
        rooms = RoomDirectory(client)
        assert await rooms.loaded() is False
        with pytest.raises(DirectoryUnavailableError):
            await rooms.check(room, "1")
        with pytest.raises(DirectoryUnavailableError):
            await rooms.publish(
                EventBus(client, history_size=1000, history_ttl=86_400),
                room,
                user="1",
                type_="message",
                data={},
            )
        # A room whose list is there is answered even so; the marker opens the rest.
        await rooms.write(room, _acl(RoomState.PRIVATE, 1, u1="owner"))
        assert (await rooms.check(room, "1")).verdict is Verdict.MEMBER
        await rooms.mark_loaded()
        assert (await rooms.check(f"other-{room}", "1")).verdict is Verdict.OPEN
    finally:
        await client.aclose()


def test_direct_message_names() -> None:
    assert dm_room(12, 3) == dm_room("3", "12") == "dm.3.12"
    assert dm_peer("dm.3.12", "3") == "12"
    assert dm_peer("dm.3.12", "12") == "3"
    assert dm_peer("dm.3.12", "4") is None
    assert dm_peer("lobby", "3") is None


def test_who_loses_access_with_each_event() -> None:
    removed = revocation(*member_removed_event(5, reason="removed", private=True, version=2))
    assert removed == Revocation("removed", 2, users=frozenset({"5"}))
    assert removed.concerns("5")
    assert not removed.concerns("6")
    # In a public room, a removed member still reads it like anyone else.
    assert revocation(*member_removed_event(5, reason="left", private=False, version=2)) is None
    private = revocation(
        *room_updated_event(visibility="private", topic=None, version=3, members=[1, 2])
    )
    assert private is not None
    assert private.concerns("3")
    assert not private.concerns("1")
    assert revocation(*room_updated_event(visibility="public", topic="t", version=4)) is None
    deleted = revocation(*room_deleted_event(version=5))
    assert deleted is not None
    assert deleted.concerns("1")
    assert deleted.reason == "deleted"
    assert revocation("member.removed", {"user_id": 5, "private": True}) is None
    assert revocation("message", {"message": "hi"}) is None


async def test_open_rooms_let_everyone_in_and_publish_on_the_cluster(
    redis_cluster: RunningRedisCluster,
) -> None:
    seeds = parse_cluster_seeds(redis_cluster.seeds)
    assert seeds is not None
    cluster = create_cluster(seeds, client_name="test-open-rooms")
    try:
        bus = EventBus(cluster, history_size=100, history_ttl=60, layout=CLUSTER)
        rooms = OpenRooms()
        room = f"open-{os.urandom(3).hex()}"
        assert await rooms.check(room, "7") == Access(Verdict.OPEN, 0)
        assert await rooms.check(dm_room(1, 2), "7") == Access(Verdict.OPEN, 0)
        assert await rooms.loaded()
        assert await rooms.versions([room]) == {room: 0}
        published = await rooms.publish(bus, room, user="7", type_="message", data={"t": "hi"})
        assert published is not None
        # Into the room's hash-tagged stream on the cluster, where realtime reads it.
        assert await bus.latest(room_channel(room), count=5) == [published.payload]
        typing = await rooms.publish(bus, room, user="7", type_="typing", data={}, durable=False)
        assert typing is not None
        assert (typing.id, typing.payload[:10]) == ("", b'{"id":null')
        with pytest.raises(NotImplementedError):
            await rooms.write(room, RoomAcl(RoomState.PRIVATE, 1, {"7": "owner"}))
    finally:
        await cluster.aclose()
