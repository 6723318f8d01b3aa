"""RoomClient against a real replica: auth, chat, resume, reconnect, final closes."""

from __future__ import annotations

from chorus_client import Backoff, Frame, RoomClient
from chorus_common.events import EventBus, room_channel
from chorus_common.tokens import TokenService
from chorus_devstack.ports import free_port

from .conftest import Replica

#: Quick reconnects: the tests wait for them.
FAST = Backoff(base=0.05, cap=0.2)


async def test_the_token_as_a_subprotocol_joins_and_chats(
    replica: Replica, tokens: TokenService, room: str
) -> None:
    seen: list[Frame] = []
    async with RoomClient([replica.url], room, tokens.issue(7), on_frame=seen.append) as client:
        subscribed = await client.wait_subscribed()
        assert subscribed["channel"] == room_channel(room)
        await client.say("hello", ref="m1")
        await client.wait_for(
            lambda: client.messages() == ["hello"] and bool(client.of_type("ack"))
        )
    [ack] = client.of_type("ack")
    [event] = [e for e in client.events if e["type"] == "message"]
    assert (ack["ref"], ack["id"]) == ("m1", event["id"])
    assert event["from"] == "7"
    assert client.last_id == event["id"]
    assert list(client.frames) == seen, "on_frame saw every frame as it arrived"
    assert client.connects == 1


async def test_the_token_in_the_query_works_too(
    replica: Replica, tokens: TokenService, room: str
) -> None:
    async with RoomClient([replica.url], room, tokens.issue(8), token_in="query") as client:
        assert (await client.wait_subscribed())["channel"] == room_channel(room)
    assert "token=" in client.url()


async def test_a_refused_token_is_final(replica: Replica, room: str) -> None:
    forged = TokenService(secret="another-secret-that-is-long-enough-too", issuer="chorus")
    async with RoomClient([replica.url], room, forged.issue(9), backoff=FAST) as client:
        await client.wait_for(lambda: bool(client.closes))
        assert client.closes[0].code == 1008
        assert client.stopped
    assert client.connects == 1, "no second attempt after a final close"


async def test_an_unreachable_address_is_skipped_for_the_next(
    replica: Replica, tokens: TokenService, room: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with RoomClient([dead, replica.url], room, tokens.issue(10), backoff=FAST) as client:
        await client.wait_subscribed()
        assert client.current_url == replica.url.replace("http", "ws", 1)
    assert client.closes[0].code == 1006
    assert client.closes[0].url.startswith(dead.replace("http", "ws", 1))


async def test_after_a_crash_it_reconnects_and_resumes_without_gap_or_duplicate(
    replica: Replica, tokens: TokenService, room: str, bus: EventBus
) -> None:
    channel = room_channel(room)
    async with RoomClient([replica.url], room, tokens.issue(11), backoff=FAST) as client:
        await client.wait_subscribed()
        for i in range(3):
            await bus.publish(channel, "message", {"message": f"before {i}"}, sender="t")
        await client.wait_for(lambda: len(client.messages()) == 3)
        replica.kill()
        await client.wait_for(lambda: bool(client.closes))
        for i in range(3):  # published while the client is away
            await bus.publish(channel, "message", {"message": f"missed {i}"}, sender="t")
        replica.start()
        resumed = await client.wait_subscribed(count=2, timeout=30)
        await client.wait_for(lambda: len(client.messages()) == 6)
    assert resumed["recovered"] is True
    assert resumed["replayed"] == 3
    assert client.messages() == [
        *(f"before {i}" for i in range(3)),
        *(f"missed {i}" for i in range(3)),
    ]
    ids = [e["id"] for e in client.events if e["type"] == "message"]
    assert len(set(ids)) == len(ids)
    assert client.connects == 2


async def test_a_raw_frame_goes_as_it_is(replica: Replica, tokens: TokenService, room: str) -> None:
    async with RoomClient([replica.url], room, tokens.issue(12)) as client:
        await client.wait_subscribed()
        await client.send_text("{not json")
        await client.wait_for(lambda: bool(client.of_type("error")))
        await client.send({"type": "ping"})
        await client.wait_for(lambda: bool(client.of_type("pong")))
    assert not client.closes, "a bad frame is answered, not fatal"


async def test_max_frames_keeps_the_newest(
    replica: Replica, tokens: TokenService, room: str, bus: EventBus
) -> None:
    async with RoomClient([replica.url], room, tokens.issue(13), max_frames=3) as client:
        await client.wait_subscribed()
        for i in range(10):
            await bus.publish(room_channel(room), "message", {"message": str(i)}, sender="t")
        await client.wait_for(
            lambda: client.last_id is not None and client.messages()[-1:] == ["9"]
        )
    assert client.messages() == ["7", "8", "9"]


def test_the_next_url_resumes_from_the_last_id() -> None:
    client = RoomClient(["http://a:1", "http://b:2"], "lobby", "tok", token_in="query")
    assert client.url() == "ws://a:1/ws/lobby?token=tok"
    client.record({"id": "5-1", "channel": "room:lobby", "type": "message", "data": {}})
    assert client.url() == "ws://a:1/ws/lobby?token=tok&since=5-1"
    client.record({"type": "reconnect", "positions": {"room:lobby": "6-0"}})
    assert client.last_id == "6-0"
