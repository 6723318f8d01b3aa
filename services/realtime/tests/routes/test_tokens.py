"""Tokens end sockets too: revoked ones are refused at connect, and open sockets and streams
close when their token expires or is revoked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from chorus_client import EventStreamClient, RoomClient
from chorus_common.tokens import TokenService, token_version_key
from chorus_devstack.servers import RunningRedis

from ..conftest import Replica


@pytest.fixture(scope="module")
def watching(redis_server: RunningRedis, module_tmp: Path) -> Iterator[Replica]:
    """A replica that re-checks tokens every second (TOKEN_VERSION_CACHE_SECONDS)."""
    replica = Replica(
        "watching", redis_server.url, module_tmp / "logs", {"TOKEN_VERSION_CACHE_SECONDS": "1"}
    ).start()
    yield replica
    replica.stop()


async def _refused_reason(replica: Replica, room: str, token: str) -> tuple[int, str]:
    url = replica.url.replace("http", "ws") + f"/ws/{room}"
    async with connect(url, subprotocols=["chorus.v1", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_a_revoked_token_closes_open_sockets_and_streams_and_is_refused(
    watching: Replica,
    tokens: TokenService,
    redis: Redis,
    room: str,
    user_id: Callable[[], str],
) -> None:
    user = user_id()
    token = tokens.issue(user)  # version 1
    async with (
        RoomClient([watching.url], room, token, reconnect=False) as socket,
        EventStreamClient([watching.url], token) as stream,
    ):
        await socket.wait_subscribed()
        await stream.wait_for(lambda: bool(stream.of_type("subscribed")))
        # What the api writes when the password changes: the lowest version still valid.
        await redis.set(token_version_key(user), 2, ex=600)
        await socket.wait_for(lambda: bool(socket.closes), timeout=10)
        # The stream ends; the client's reconnect with the same token is a 401.
        await stream.wait_for(lambda: any(c.code == 1008 for c in stream.closes), timeout=10)
    assert (socket.closes[0].code, socket.closes[0].reason) == (4401, "token revoked")
    assert stream.closes[0].reason == "stream ended"
    assert stream.statuses == [200, 401]
    # Reconnecting the socket with it is refused; a token of the new version is welcome.
    assert await _refused_reason(watching, room, token) == (1008, "token revoked")
    async with RoomClient(
        [watching.url], room, tokens.issue(user, version=2), reconnect=False
    ) as fresh:
        await fresh.wait_subscribed()


async def test_a_socket_closes_when_its_token_expires(
    watching: Replica, tokens: TokenService, room: str, user_id: Callable[[], str]
) -> None:
    # Expired nine seconds ago: still inside the ten seconds of clock skew every service
    # tolerates, so it connects — and is closed once that leeway has passed too.
    token = tokens.issue(user_id(), ttl=timedelta(seconds=-9))
    async with RoomClient([watching.url], room, token, reconnect=False) as socket:
        await socket.wait_subscribed()
        await socket.wait_for(lambda: bool(socket.closes), timeout=10)
    assert (socket.closes[0].code, socket.closes[0].reason) == (4401, "token expired")
