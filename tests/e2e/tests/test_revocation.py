"""A new password or a deleted account ends the account's tokens in every service.

Through the ingress, as clients see it: the api refuses the old token at once; realtime
closes the open WebSocket (4401) and ends the SSE stream, and refuses a new connection;
the gateway answers 401 — each within ``TOKEN_VERSION_CACHE_SECONDS`` (5 s by default,
plus one sweep of realtime's open connections).
"""

from __future__ import annotations

import os

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from chorus_client import SUBPROTOCOL, EventStreamClient, RoomClient
from chorus_e2e.accounts import PASSWORD, Account, log_in, sign_up
from chorus_e2e.polling import eventually

NEW_PASSWORD = "Another-Horse-77"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _socket_refusal(ingress: str, room: str, token: str) -> tuple[int, str]:
    """How a new socket with ``token`` ends: (close code, reason), or (0, …) if admitted."""
    url = ingress.replace("http", "ws", 1) + f"/ws/{room}"
    protocols = [Subprotocol(SUBPROTOCOL), Subprotocol(f"bearer.{token}")]
    try:
        async with connect(url, subprotocols=protocols, open_timeout=5) as ws:
            return 0, f"admitted: {await ws.recv()!r}"
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            return 1006, "dropped"
        return closed.rcvd.code, closed.rcvd.reason


async def _refused_everywhere(
    http: httpx.AsyncClient, ingress: str, user: Account, token: str, room: str
) -> None:
    """The api, the gateway and realtime all refuse ``token`` (within the cache time)."""
    assert (await http.get("/api/users/me", headers=_bearer(token))).status_code == 401
    await eventually(
        lambda: http.get("/v1/models", headers=_bearer(token)),
        until=lambda r: r.status_code == 401,
        timeout=15,
        what="the gateway refusing the revoked token",
    )
    await eventually(
        lambda: _socket_refusal(ingress, room, token),
        until=lambda refusal: refusal == (1008, "token revoked"),
        timeout=15,
        what="realtime refusing the revoked token",
    )
    stream = await http.get("/events", headers=_bearer(token))
    assert stream.status_code == 401


async def test_a_new_password_and_then_deletion_end_tokens_everywhere(
    ingress: str, http: httpx.AsyncClient
) -> None:
    user = await sign_up(http, "revoked")
    room = f"revoked-{os.urandom(4).hex()}"
    assert (await http.get("/v1/models", headers=user.auth)).status_code == 200
    async with (
        RoomClient([ingress], room, user.token, reconnect=False) as socket,
        EventStreamClient([ingress], user.token) as stream,
    ):
        await socket.wait_subscribed()
        await stream.wait_for(lambda: bool(stream.of_type("subscribed")))
        changed = await http.patch(
            "/api/users/me",
            json={"password": NEW_PASSWORD, "current_password": PASSWORD},
            headers=user.auth,
        )
        assert changed.status_code == 200, changed.text
        await socket.wait_for(lambda: bool(socket.closes), timeout=20)
        await stream.wait_for(lambda: any(c.code == 1008 for c in stream.closes), timeout=20)
    assert (socket.closes[0].code, socket.closes[0].reason) == (4401, "token revoked")
    assert stream.closes[0].reason == "stream ended"
    await _refused_everywhere(http, ingress, user, user.token, room)

    # The new password gives a token every service takes...
    fresh = await log_in(http, user.email, NEW_PASSWORD)
    assert (await http.get("/v1/models", headers=_bearer(fresh))).status_code == 200
    async with RoomClient([ingress], room, fresh, reconnect=False) as again:
        await again.wait_subscribed()
        # ...until the account is deleted (its password confirms it).
        deleted = await http.request(
            "DELETE",
            "/api/users/me",
            json={"current_password": NEW_PASSWORD},
            headers=_bearer(fresh),
        )
        assert deleted.status_code == 204, deleted.text
        await again.wait_for(lambda: bool(again.closes), timeout=20)
    assert again.closes[0].code == 4401
    await _refused_everywhere(http, ingress, user, fresh, room)
