"""``/ws/{room}`` with two replicas on real Redis: rooms, auth, limits, resume, faults."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable

import httpx
import orjson
import pytest
from arq.connections import ArqRedis
from arq.jobs import Job
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chorus_client import RoomClient
from chorus_common.events import EventBus, room_channel, stream_key
from chorus_common.queue import deserialize_job
from chorus_common.tokens import TokenService

from ..conftest import LIMITS_ENV, Replica, ReplicaFactory


async def _presence(http: httpx.AsyncClient, replica: Replica, room: str, token: str) -> dict:
    response = await http.get(
        f"{replica.url}/rooms/{room}/presence", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    body: dict = response.json()
    return body


def room_stream(room: str) -> str:
    """The Redis stream holding a room's history."""
    return stream_key(room_channel(room))


async def _status(http: httpx.AsyncClient, url: str, status: int) -> bool:
    return (await http.get(url)).status_code == status


async def _eventually(check: Callable[[], object], *, timeout: float = 10.0) -> None:
    """Await until ``check()`` (sync or async) is truthy."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)


async def test_clients_on_two_replicas_share_a_room(
    pair: tuple[Replica, Replica],
    tokens: TokenService,
    room: str,
    user_id: Callable[[], str],
    http: httpx.AsyncClient,
) -> None:
    one, two = pair
    ua, ub = user_id(), user_id()
    token_a = tokens.issue(ua)
    async with RoomClient([one.url], room, token_a) as a:
        await a.wait_subscribed()
        async with RoomClient([two.url], room, tokens.issue(ub), token_in="query") as b:
            await b.wait_subscribed()
            joined = lambda: [f for f in a.of_type("join") if f["data"]["user_id"] == ub]  # noqa: E731
            await a.wait_for(lambda: bool(joined()))
            assert joined()[0]["data"]["count"] == 2
            for replica in (one, two):
                seen = await _presence(http, replica, room, token_a)
                assert seen["count"] == 2
                assert {m["user_id"]: m["connections"] for m in seen["members"]} == {ua: 1, ub: 1}
            for n in range(20):
                await a.say(f"a{n}")
                await b.say(f"b{n}")
            await a.wait_for(lambda: len(a.messages()) == 40)
            await b.wait_for(lambda: len(b.messages()) == 40)
            # Each sender's messages in its order, and both clients see one same order.
            assert [m for m in a.messages() if m[0] == "a"] == [f"a{n}" for n in range(20)]
            assert [m for m in b.messages() if m[0] == "b"] == [f"b{n}" for n in range(20)]
            assert a.messages() == b.messages()
            assert {f["from"] for f in a.events if f["type"] == "message"} == {ua, ub}
        left = lambda: [f for f in a.of_type("leave") if f["data"]["user_id"] == ub]  # noqa: E731
        await a.wait_for(lambda: bool(left()))
        assert left()[0]["data"]["count"] == 1
        seen = await _presence(http, two, room, token_a)
        assert [m["user_id"] for m in seen["members"]] == [ua]


async def test_users_joining_at_once_on_two_replicas_get_counts_in_order(
    pair: tuple[Replica, Replica],
    tokens: TokenService,
    room: str,
    user_id: Callable[[], str],
) -> None:
    # Presence counts and their join/leave events are one step in Redis: whatever order
    # thirteen users land in on two replicas, a member sees the room grow 1, 2, … 13 and
    # shrink back, one user per event.
    one, two = pair
    first = user_id()
    async with RoomClient([one.url], room, tokens.issue(first)) as watcher:
        await watcher.wait_subscribed()
        users = [user_id() for _ in range(12)]
        clients = [
            RoomClient([(one, two)[n % 2].url], room, tokens.issue(user))
            for n, user in enumerate(users)
        ]
        try:
            await asyncio.gather(*(client.start() for client in clients))
            await watcher.wait_for(lambda: len(watcher.of_type("join")) == 13)
        finally:
            await asyncio.gather(*(client.stop() for client in clients))
        await watcher.wait_for(lambda: len(watcher.of_type("leave")) == 12)
        joins, leaves = watcher.of_type("join"), watcher.of_type("leave")

    # (The watcher's own join may land after the first others': it is recorded just after
    # its "subscribed" frame goes out.)
    assert [f["data"]["count"] for f in joins] == list(range(1, 14))
    assert sorted(f["data"]["user_id"] for f in joins) == sorted([first, *users])
    assert [f["data"]["count"] for f in leaves] == list(range(12, 0, -1))
    assert sorted(f["data"]["user_id"] for f in leaves) == sorted(users)


@pytest.mark.parametrize("token", ["", "not-a-jwt", "forged"])
async def test_missing_or_forged_token_is_closed_1008_before_joining(
    pair: tuple[Replica, Replica],
    tokens: TokenService,
    room: str,
    http: httpx.AsyncClient,
    token: str,
) -> None:
    one, _ = pair
    if token == "forged":
        forger = TokenService(
            secret="another-secret-that-is-long-enough-for-hs256", issuer="chorus"
        )
        token = forger.issue(1)
    url = one.url.replace("http", "ws") + f"/ws/{room}" + (f"?token={token}" if token else "")
    async with connect(url, subprotocols=["chorus.v1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chorus.v1"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    # Nobody joined.
    seen = await _presence(http, one, room, tokens.issue(1))
    assert seen["count"] == 0


async def test_oversize_frame_is_closed_1009(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str
) -> None:
    one, _ = pair
    async with RoomClient([one.url], room, tokens.issue(7), reconnect=False) as client:
        await client.wait_subscribed()
        await client.say("x" * 20_000)
        await client.wait_for(lambda: bool(client.closes))
    assert client.closes[0].code == 1009


async def test_flooding_gets_an_error_then_1008(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str
) -> None:
    one, _ = pair
    async with RoomClient([one.url], room, tokens.issue(8), reconnect=False) as client:
        await client.wait_subscribed()
        with contextlib.suppress(ConnectionError, ConnectionClosed):
            for _ in range(200):
                await client.send({"type": "ping"})
        await client.wait_for(lambda: bool(client.closes))
    errors = client.of_type("error")
    assert errors
    assert errors[0]["data"]["code"] == "rate_limited"
    assert client.closes[0].code == 1008


async def test_bad_frames_get_error_frames_and_the_connection_stays(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str
) -> None:
    one, _ = pair
    async with RoomClient([one.url], room, tokens.issue(9)) as client:
        await client.wait_subscribed()
        for frame in ({"type": "dance"}, {"type": "message", "message": ""}, [1, 2]):
            await client.send(frame)  # type: ignore[arg-type]
        await client.send_text("{not json")
        await client.send({"type": "subscribe", "channel": "user:someone-else"})
        await client.wait_for(lambda: len(client.of_type("error")) == 5)
        codes = [f["data"]["code"] for f in client.of_type("error")]
        assert codes == [
            "unknown_type",
            "invalid_message",
            "invalid_frame",
            "invalid_json",
            "forbidden_channel",
        ]
        await client.send({"type": "ping"})
        await client.wait_for(lambda: bool(client.of_type("pong")))
        assert not client.closes


async def test_resume_with_since_replays_then_goes_live(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str, bus: EventBus
) -> None:
    one, two = pair
    channel = room_channel(room)
    first = await bus.publish(channel, "message", {"message": "m0"}, sender="t")
    for n in range(1, 5):
        await bus.publish(channel, "message", {"message": f"m{n}"}, sender="t")
    async with RoomClient([two.url], room, tokens.issue(10), since=first.id) as client:
        subscribed = await client.wait_subscribed()
        assert subscribed["recovering"] is True
        assert subscribed["recovered"] is True
        assert subscribed["replayed"] == 4
        await bus.publish(channel, "message", {"message": "m5"}, sender="t")
        await client.wait_for(lambda: "m5" in client.messages())
        assert client.messages() == [f"m{n}" for n in range(1, 6)]
    # An offset that left history is not recovered, and nothing stale is replayed.
    async with RoomClient([one.url], room, tokens.issue(10), since="1-0") as client:
        subscribed = await client.wait_subscribed()
        assert subscribed["recovered"] is False
        assert client.messages() == []


async def test_subscribe_frame_multiplexes_rooms_with_resume(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str, bus: EventBus
) -> None:
    one, _ = pair
    other = f"{room}-b"
    anchor = await bus.publish(room_channel(other), "message", {"message": "old"}, sender="t")
    await bus.publish(room_channel(other), "message", {"message": "missed"}, sender="t")
    async with RoomClient([one.url], room, tokens.issue(11)) as client:
        await client.wait_subscribed()
        await client.send({"type": "subscribe", "channel": f"room:{other}", "since": anchor.id})
        second = await client.wait_subscribed(count=2)
        assert second["channel"] == f"room:{other}"
        assert second["recovered"] is True
        await client.say("to b", channel=f"room:{other}")
        await client.wait_for(lambda: "to b" in client.messages())
        assert client.messages() == ["missed", "to b"]
        assert {f["channel"] for f in client.events if f["type"] == "message"} == {f"room:{other}"}


async def test_assistant_mention_enqueues_exactly_one_job(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str, redis: Redis
) -> None:
    one, _ = pair
    async with RoomClient([one.url], room, tokens.issue(12)) as client:
        await client.wait_subscribed()
        await client.say("@assistant hi", ref="q1")
        await client.say("just chatting about @assistant", ref="q2")
        # An ack and the echo of the message are separate frames: wait for both.
        await client.wait_for(
            lambda: len(client.of_type("ack")) == 2 and len(client.messages()) == 2
        )
        acks = {f["ref"]: f["id"] for f in client.of_type("ack")}
        assert client.messages() == ["@assistant hi", "just chatting about @assistant"]
    job_id = f"assistant:{room}:{acks['q1']}"
    keys = [k async for k in redis.scan_iter(match=f"arq:job:assistant:{room}:*")]
    assert keys == [f"arq:job:{job_id}".encode()]
    info = await Job(job_id, ArqRedis(redis.connection_pool), _deserializer=deserialize_job).info()
    assert info is not None
    assert info.function == "answer_in_room"
    assert info.kwargs == {
        "room": room,
        "message_id": acks["q1"],
        "prompt": "hi",
        "user_id": "12",
    }
    assert await redis.get(f"chorus:job-owner:{job_id}") == b"12"


async def test_connections_per_user_are_limited_across_replicas(
    make_replica: ReplicaFactory, redis_url: str, tokens: TokenService, room: str
) -> None:
    one = make_replica(redis_url, MAX_CONNECTIONS_PER_USER="2")
    two = make_replica(redis_url, MAX_CONNECTIONS_PER_USER="2")
    token = tokens.issue(13)
    async with (
        RoomClient([one.url], room, token) as a,
        RoomClient([two.url], room, token) as b,
    ):
        await a.wait_subscribed()
        await b.wait_subscribed()
        async with RoomClient([one.url], room, token, reconnect=False) as c:
            await c.wait_for(lambda: bool(c.closes))
        assert c.closes[0].code == 1008
        assert "too many" in c.closes[0].reason
        assert not a.closes
        assert not b.closes


async def _publish_steadily(bus: EventBus, channel: str, count: int, kind: str) -> list[str]:
    ids = []
    for n in range(count):
        ids.append((await bus.publish(channel, kind, {"message": f"n{n}", "n": n}, sender="t")).id)
        await asyncio.sleep(0.002)
    return ids


@pytest.mark.slow
async def test_sigkill_a_replica_mid_stream_the_client_resumes_elsewhere_losing_nothing(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    bus: EventBus,
    http: httpx.AsyncClient,
) -> None:
    one = make_replica(redis_url)
    two = make_replica(redis_url)
    token = tokens.issue(14)
    async with RoomClient([one.url, two.url], room, token) as client:
        await client.wait_subscribed()
        assert (await _presence(http, two, room, token))["count"] == 1
        publisher = asyncio.create_task(_publish_steadily(bus, room_channel(room), 1000, "message"))
        await client.wait_for(lambda: len(client.messages()) >= 250)
        await asyncio.to_thread(one.kill)
        ids = await publisher
        await client.wait_for(lambda: len(client.messages()) >= 1000, timeout=20)
        assert client.messages() == [f"n{n}" for n in range(1000)]
        received = [f["id"] for f in client.events if f["type"] == "message"]
        assert received == ids
        assert client.connects == 2
        assert f":{one.port}/" in client.closes[0].url
        # The resume replayed exactly what the client missed: the events after the last one
        # it had from the dead replica, up to the position the replay read — and they are
        # the first events of the new connection, before anything live.
        frames = list(client.frames)
        second = [i for i, f in enumerate(frames) if f.get("type") == "subscribed"][1]
        resumed = frames[second]
        assert resumed["recovered"] is True
        had = [f["id"] for f in frames[:second] if f in client.events]
        after = [f["id"] for f in frames[second + 1 :] if f in client.events]
        replayed = after[: resumed["replayed"]]
        assert (replayed[-1] if replayed else had[-1]) == resumed["position"]
        missed = ids[ids.index(had[-1]) + 1 : ids.index(resumed["position"]) + 1]
        assert [i for i in replayed if i in ids] == missed

    # The dead replica's member drops out of presence once its heartbeat expires.
    async def gone() -> bool:
        return (await _presence(http, two, room, token))["count"] == 0

    await _eventually(gone, timeout=15)


@pytest.mark.slow
async def test_a_stalled_client_is_disconnected_and_others_get_everything(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    bus: EventBus,
    http: httpx.AsyncClient,
) -> None:
    replica = make_replica(redis_url, SEND_QUEUE_MAX_MESSAGES="50")
    # A client that stops reading: tiny receive buffer, and nothing ever consumes frames.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", replica.port))
    url = replica.url.replace("http", "ws") + f"/ws/{room}?token={tokens.issue(15)}"
    async with (
        connect(url, sock=sock, max_queue=1, ping_interval=None) as stalled,
        RoomClient([replica.url], room, tokens.issue(16)) as a,
        RoomClient([replica.url], room, tokens.issue(17)) as b,
    ):
        await a.wait_subscribed()
        await b.wait_subscribed()
        payload = "x" * 8000
        for n in range(1500):
            await bus.publish(
                room_channel(room), "message", {"message": f"{n}:{payload}"}, sender="t"
            )
        for client in (a, b):
            await client.wait_for(lambda c=client: len(c.messages()) == 1500, timeout=30)  # type: ignore[misc]
            assert [int(m.split(":")[0]) for m in client.messages()] == list(range(1500))
            assert not client.closes
        metrics = (await http.get(f"{replica.url}/metrics")).text
        assert "chorus_realtime_slow_client_disconnects_total 1.0" in metrics

        # The stalled socket was dropped by the server (it sees the end once it reads).
        async def read_to_the_end() -> None:
            while True:
                await asyncio.wait_for(stalled.recv(), timeout=10)

        with pytest.raises(ConnectionClosed):
            await read_to_the_end()


@pytest.mark.slow
async def test_drain_closes_1012_with_the_last_id(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    bus: EventBus,
    http: httpx.AsyncClient,
) -> None:
    # The process stays up, not ready, for DRAIN_SECONDS: long enough to see /readyz answer
    # 503 on a loaded machine too.
    replica = make_replica(redis_url, DRAIN_SECONDS="4")
    async with RoomClient([replica.url], room, tokens.issue(18), reconnect=False) as client:
        await client.wait_subscribed()
        # Its own join is published after `subscribed`: wait for it, so the last event in the
        # room is the last message below.
        await client.wait_for(lambda: bool(client.of_type("join")))
        last = None
        for n in range(5):
            last = (
                await bus.publish(room_channel(room), "message", {"message": f"{n}"}, sender="t")
            ).id
        await client.wait_for(lambda: len(client.messages()) == 5)
        replica.terminate()
        # Not ready from the signal on, for the whole drain window.
        await _eventually(lambda: _status(http, f"{replica.url}/readyz", 503), timeout=4.0)
        await client.wait_for(lambda: bool(client.closes), timeout=10)
    [reconnect] = client.of_type("reconnect")
    assert reconnect["positions"] == {room_channel(room): last}
    assert client.closes[0].code == 1012
    assert client.closes[0].reason.endswith(f"last_id={last}")
    await asyncio.to_thread(replica.process.popen.wait, 30)  # type: ignore[union-attr]
    assert replica.process.returncode() == 0


async def test_typing_is_ephemeral(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str, redis: Redis
) -> None:
    one, two = pair
    async with (
        RoomClient([one.url], room, tokens.issue(19)) as a,
        RoomClient([two.url], room, tokens.issue(20)) as b,
    ):
        await a.wait_subscribed()
        await b.wait_subscribed()
        await a.send({"type": "typing"})
        await b.wait_for(lambda: bool(b.of_type("typing")))
        [typing] = b.of_type("typing")
        assert typing["id"] is None
        assert typing["data"] == {"user_id": "19"}
        await a.say("after typing", ref="after")
        await b.wait_for(lambda: "after typing" in b.messages())
    # Not in history: a client resuming from the start gets the message, never the typing.
    kinds = [orjson.loads(f[b"e"])["type"] for _, f in await redis.xrange(room_stream(room))]
    assert "typing" not in kinds
    assert kinds.count("message") == 1


async def test_a_resume_past_replay_max_is_not_recovered_and_replays_nothing(
    limited: Replica, tokens: TokenService, room: str, bus: EventBus
) -> None:
    replay_max = int(LIMITS_ENV["REPLAY_MAX"])
    channel = room_channel(room)

    async def missed(count: int, prefix: str) -> tuple[str, str]:
        """Publish an event the client saw, then ``count`` it missed: (first id, last id)."""
        seen = await bus.publish(channel, "message", {"message": f"{prefix}-seen"}, sender="t")
        last = seen
        for n in range(count):
            last = await bus.publish(channel, "message", {"message": f"{prefix}-{n}"}, sender="t")
        return seen.id, last.id

    # Exactly REPLAY_MAX missed: all of it is replayed.
    since, _ = await missed(replay_max, "fits")
    async with RoomClient([limited.url], room, tokens.issue(30), since=since) as client:
        subscribed = await client.wait_subscribed()
        await client.wait_for(lambda: len(client.messages()) == replay_max)
        assert (subscribed["recovered"], subscribed["replayed"]) == (True, replay_max)
        assert client.messages() == [f"fits-{n}" for n in range(replay_max)]

    # One more than that: nothing old, "recovered": false, and live from here on.
    since, last_missed = await missed(replay_max + 1, "over")
    async with RoomClient([limited.url], room, tokens.issue(30), since=since) as client:
        subscribed = await client.wait_subscribed()
        assert (subscribed["recovering"], subscribed["recovered"]) == (True, False)
        assert subscribed["replayed"] == 0
        await bus.publish(channel, "message", {"message": "live"}, sender="t")
        await client.wait_for(lambda: "live" in client.messages())
        assert client.messages() == ["live"]
        assert all(_key(e["id"]) > _key(last_missed) for e in client.events)


def _key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq)


async def test_channels_per_connection_are_limited_and_unsubscribe_frees_one(
    limited: Replica, tokens: TokenService, room: str, redis: Redis, bus: EventBus
) -> None:
    # MAX_CHANNELS_PER_CONNECTION is 2: the path's room and one more.
    second, third = f"room:{room}-2", f"room:{room}-3"
    async with RoomClient([limited.url], room, tokens.issue(31)) as client:
        await client.wait_subscribed()
        await client.send({"type": "subscribe", "channel": second})
        await client.wait_subscribed(count=2)
        await client.send({"type": "subscribe", "channel": third})
        await client.wait_for(lambda: bool(client.of_type("error")))
        [refused] = client.of_type("error")
        assert refused["data"]["code"] == "too_many_channels"
        assert not client.closes  # refused, not disconnected

        await client.send({"type": "unsubscribe", "channel": second})
        await client.wait_for(lambda: bool(client.of_type("unsubscribed")))
        assert client.of_type("unsubscribed") == [{"type": "unsubscribed", "channel": second}]
        await client.send({"type": "subscribe", "channel": third})
        third_subscribed = await client.wait_subscribed(count=3)
        assert third_subscribed["channel"] == third

        # Nothing of the channel left arrives any more; the new one is live.
        await bus.publish(second, "message", {"message": "to the left room"}, sender="t")
        await bus.publish(third, "message", {"message": "to the new room"}, sender="t")
        await client.wait_for(lambda: "to the new room" in client.messages())
        assert "to the left room" not in client.messages()
        # Unsubscribing from what is not subscribed is an error frame, not a close.
        await client.send({"type": "unsubscribe", "channel": second})
        await client.wait_for(lambda: len(client.of_type("error")) == 2)
        assert client.of_type("error")[1]["data"]["code"] == "not_subscribed"
        assert not client.closes
    # Leaving a room by unsubscribing is a leave for everyone in it.
    kinds = [orjson.loads(f[b"e"])["type"] for _, f in await redis.xrange(stream_key(second))]
    assert kinds == ["join", "leave", "message"]


async def test_a_token_in_the_query_string_never_reaches_the_log(
    limited: Replica, tokens: TokenService, room: str, http: httpx.AsyncClient
) -> None:
    token = tokens.issue(32)
    log = limited.process.log_path
    start = log.stat().st_size
    async with RoomClient([limited.url], room, token, token_in="query") as client:
        await client.wait_subscribed()
    async with http.stream("GET", f"{limited.url}/events?token={token}") as response:
        assert response.status_code == 200
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    url = limited.url.replace("http", "ws") + f"/ws/{room}?token={forged}"
    async with connect(url, subprotocols=["chorus.v1"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed):
            await ws.recv()

    async def logged() -> bool:  # the socket's lines are written by now, or soon
        return "token=[redacted]" in log.read_text()[start:]

    await _eventually(logged)
    lines = log.read_text()[start:]
    assert f"/ws/{room}?token=[redacted]" in lines
    for secret in (token, forged, token.split(".")[2], forged.split(".")[2]):
        assert secret not in lines


async def test_text_no_store_can_hold_gets_an_error_frame_and_is_not_published(
    pair: tuple[Replica, Replica], tokens: TokenService, room: str, redis: Redis
) -> None:
    """The frame that used to be acked, stored, and then fail every history write."""
    one, _ = pair
    async with RoomClient([one.url], room, tokens.issue(21)) as client:
        await client.wait_subscribed()
        await client.say("a\u0000b", ref="nul")
        await client.say("fine", ref="ok")
        await client.wait_for(lambda: bool(client.of_type("ack")) and bool(client.of_type("error")))
        [error] = client.of_type("error")
        assert error["data"]["code"] == "invalid_text"
        assert "NUL" in error["data"]["message"]
        assert error["data"]["ref"] == "nul"
        assert [a["ref"] for a in client.of_type("ack")] == ["ok"]
        assert not client.closes
    stored = [
        orjson.loads(fields[b"e"]) for _, fields in await redis.xrange(f"chorus:stream:room:{room}")
    ]
    assert [e["data"]["message"] for e in stored if e["type"] == "message"] == ["fine"]


async def _metric(http: httpx.AsyncClient, replica: Replica, series: str) -> float:
    text = (await http.get(f"{replica.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


async def _rejected(http: httpx.AsyncClient, replicas: list[Replica], reason: str) -> float:
    """Refusals for ``reason``, summed over ``replicas``."""
    series = f'chorus_realtime_rejected_total{{reason="{reason}"}}'
    return sum([await _metric(http, replica, series) for replica in replicas])


async def test_a_users_byte_quota_holds_across_replicas(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    user_id: Callable[[], str],
    http: httpx.AsyncClient,
) -> None:
    """Two sockets on two replicas share one bucket: 8 KiB, refilled at 100 bytes/s."""
    env = {"MAX_MESSAGE_BYTES": "4096", "USER_BYTES_BURST": "8192", "USER_BYTES_PER_SECOND": "100"}
    one = make_replica(redis_url, **env)
    two = make_replica(redis_url, **env)
    token = tokens.issue(user_id())
    async with (
        RoomClient([one.url], room, token) as a,
        RoomClient([two.url], room, token) as b,
    ):
        await a.wait_subscribed()
        await b.wait_subscribed()
        for n in range(3):
            await a.say(f"a{n}:" + "x" * 2000, ref=f"a{n}")
            await a.wait_for(lambda n=n: len(a.of_type("ack")) + len(a.of_type("error")) > n)  # type: ignore[misc]
            await b.say(f"b{n}:" + "x" * 2000, ref=f"b{n}")
            await b.wait_for(lambda n=n: len(b.of_type("ack")) + len(b.of_type("error")) > n)  # type: ignore[misc]
        acks = [f["ref"] for f in (*a.of_type("ack"), *b.of_type("ack"))]
        refused = [f["data"] for f in (*a.of_type("error"), *b.of_type("error"))]
        assert sorted(acks) == ["a0", "a1", "b0", "b1"]  # 4 x ~2 KB: the bucket, once
        assert sorted(r["ref"] for r in refused) == ["a2", "b2"]
        assert {r["code"] for r in refused} == {"quota_exceeded"}
        assert all(r["retry_after"] > 0 for r in refused)
        assert not a.closes
        assert not b.closes
        await a.wait_for(lambda: len(a.messages()) == 4)
    assert await _rejected(http, [one, two], "user_bytes") == 2


async def test_a_users_new_rooms_are_limited_across_replicas(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    user_id: Callable[[], str],
    redis: Redis,
    bus: EventBus,
    http: httpx.AsyncClient,
) -> None:
    one = make_replica(redis_url, USER_NEW_ROOMS_PER_MINUTE="2")
    two = make_replica(redis_url, USER_NEW_ROOMS_PER_MINUTE="2")
    token = tokens.issue(user_id())
    existing = f"{room}-old"
    await bus.publish(room_channel(existing), "message", {"message": "hi"}, sender="x")
    async with (
        RoomClient([one.url], f"{room}-1", token) as a,
        RoomClient([two.url], f"{room}-2", token) as b,
    ):
        await a.wait_subscribed()
        await b.wait_subscribed()
        await a.send({"type": "subscribe", "channel": f"room:{room}-3"})
        await a.wait_for(lambda: bool(a.of_type("error")))
        [error] = a.of_type("error")
        assert error["data"]["code"] == "room_quota"
        assert error["channel"] == f"room:{room}-3"
        # A room that exists costs nothing.
        await b.send({"type": "subscribe", "channel": f"room:{existing}"})
        await b.wait_subscribed(count=2)
        # Nor does the new room get created behind the refusal.
        assert await redis.exists(f"chorus:stream:room:{room}-3") == 0
        async with RoomClient([two.url], f"{room}-4", token, reconnect=False) as c:
            await c.wait_for(lambda: bool(c.closes))
        assert c.of_type("error")[0]["data"]["code"] == "room_quota"
        assert c.closes[0].code == 1008
        assert not a.closes
        assert not b.closes
    assert await _rejected(http, [one, two], "user_rooms") == 2


async def test_a_user_has_only_a_few_questions_waiting_for_the_assistant(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    user_id: Callable[[], str],
    redis: Redis,
) -> None:
    one = make_replica(redis_url, ASSISTANT_MAX_PENDING_PER_USER="2")
    two = make_replica(redis_url, ASSISTANT_MAX_PENDING_PER_USER="2")
    user = user_id()
    token = tokens.issue(user)
    async with (
        RoomClient([one.url], room, token) as a,
        RoomClient([two.url], room, token) as b,
    ):
        await a.wait_subscribed()
        await b.wait_subscribed()
        pending = f"chorus:assistant:pending:{user}"
        for n, client in enumerate((a, b, a, b)):
            ref = f"q{n}"
            await client.say(f"@assistant question {n}", ref=ref)
            # This question's own ack (each client already holds an earlier one). The ack
            # comes when the message is posted, before the question is counted: wait until
            # it is counted (its job pending) or refused, so the next one comes after it.
            await client.wait_for(
                lambda c=client, ref=ref: any(f["ref"] == ref for f in c.of_type("ack"))  # type: ignore[misc]
            )
            [ack] = [f for f in client.of_type("ack") if f["ref"] == ref]
            job = f"assistant:{room}:{ack['id']}"
            async with asyncio.timeout(10):
                while await redis.zscore(pending, job) is None and not any(
                    f["data"].get("ref") == ref for f in client.of_type("error")
                ):
                    await asyncio.sleep(0.02)
        # Each client's wait wakes on its own frames only: one wait per client.
        await a.wait_for(lambda: len(a.of_type("error")) == 1)
        await b.wait_for(lambda: len(b.of_type("error")) == 1)
    refused = [f["data"] for f in (*a.of_type("error"), *b.of_type("error"))]
    assert sorted(r["ref"] for r in refused) == ["q2", "q3"]
    assert {r["code"] for r in refused} == {"assistant_busy"}
    # Their messages are in the room all the same, but only two answers are queued.
    queued = [k async for k in redis.scan_iter(match=f"arq:job:assistant:{room}:*")]
    assert len(queued) == 2
    assert await redis.zcard(pending) == 2


async def test_a_replay_counts_against_the_send_queue(
    make_replica: ReplicaFactory,
    redis_url: str,
    tokens: TokenService,
    room: str,
    bus: EventBus,
    http: httpx.AsyncClient,
) -> None:
    """What a resume would replay must fit the send queue, or it is not read at all."""
    replica = make_replica(redis_url, SEND_QUEUE_MAX_BYTES="65536")
    channel = room_channel(room)
    first = await bus.publish(channel, "message", {"message": "start"}, sender="t")
    for n in range(30):
        await bus.publish(channel, "message", {"message": f"{n}:" + "x" * 1000}, sender="t")
    token = tokens.issue(22)
    async with RoomClient([replica.url], room, token, since=first.id) as fits:
        subscribed = await fits.wait_subscribed()
        assert (subscribed["recovered"], subscribed["replayed"]) == (True, 30)
    for n in range(30, 100):  # now ~100 KB after the offset: more than the queue holds
        await bus.publish(channel, "message", {"message": f"{n}:" + "x" * 1000}, sender="t")
    too_large = 'chorus_realtime_recoveries_total{result="too_large"}'
    before = await _metric(http, replica, too_large)
    async with RoomClient([replica.url], room, token, since=first.id) as behind:
        subscribed = await behind.wait_subscribed()
        assert (subscribed["recovered"], subscribed["replayed"]) == (False, 0)
        await bus.publish(channel, "message", {"message": "live"}, sender="t")
        await behind.wait_for(lambda: "live" in behind.messages())
        assert behind.messages() == ["live"]  # nothing old, then live as usual
    assert await _metric(http, replica, too_large) == before + 1


def _rss_bytes(replica: Replica) -> int:
    popen = replica.process.popen
    assert popen is not None
    with open(f"/proc/{popen.pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
async def test_resuming_a_large_history_and_never_reading_costs_a_replica_little(
    make_replica: ReplicaFactory, redis_url: str, tokens: TokenService, room: str, bus: EventBus
) -> None:
    """A client that asks for 9 MB of history and reads nothing: the replica does not fetch
    it, so it holds none of it."""
    replica = make_replica(redis_url)
    channel = room_channel(room)
    payload = "x" * 15_000
    ids = [
        (await bus.publish(channel, "message", {"message": f"{n}:{payload}"}, sender="t")).id
        for n in range(600)
    ]
    before = _rss_bytes(replica)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", replica.port))
    url = replica.url.replace("http", "ws") + f"/ws/{room}?since={ids[0]}&token={tokens.issue(23)}"
    async with connect(url, sock=sock, max_queue=1, ping_interval=None, max_size=2**20) as ws:
        subscribed = orjson.loads(await ws.recv())
        assert subscribed["type"] == "subscribed"
        assert (subscribed["recovered"], subscribed["replayed"]) == (False, 0)
        # A replay would have been queued with that frame, in the same step: all done.
        grown = _rss_bytes(replica) - before
    assert grown < 4 * 1024 * 1024, f"the replica grew by {grown / 2**20:.1f} MiB"
