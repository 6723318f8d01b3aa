"""``/ws/{room}``: the WebSocket of a room (see the README for the protocol).

Authentication happens after the upgrade so that a refusal is a close code the client can
read (1008 with a reason) rather than an opaque failed handshake; nothing is joined or
subscribed before the token is verified — signature, claims and revocation, as the api
and the gateway check it (``chorus_common.tokens.TokenVerifier``). Once open, the socket
is closed with 4401 when its token expires or is revoked (``domain/token_watch.py``), and
with 4403 when the room refuses the user or takes their access away (``domain/session.py``,
``domain/access.py``).

The endpoint is plain ASGI, reached through :class:`RoomSockets` ahead of the HTTP
middleware stack. An idle WebSocket keeps its ASGI call open for as long as it lives, and
every layer it passed through stays parked with it: FastAPI's router, dependency solver
and exit stacks, Starlette's exception wrappers, the metrics middleware — about 14 KiB of
coroutine frames, closures and exit stacks per connection, for layers that do nothing for a
WebSocket. Only the request-id context is kept, so log lines still correlate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, Final
from urllib.parse import parse_qsl

from opentelemetry import trace
from opentelemetry.trace import SpanContext
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from chorus_common.events import InvalidChannelError, room_channel
from chorus_common.request_context import RequestContextMiddleware
from chorus_common.tokens import AccessClaims, InvalidTokenError, RevokedTokenError
from chorus_common.trace_context import context_from_headers
from chorus_realtime.domain.connection import CloseCode, Connection
from chorus_realtime.domain.hub import HubUnavailableError
from chorus_realtime.domain.session import CloseConnection, Session, SessionLimits
from chorus_realtime.metrics import REJECTED
from chorus_realtime.resources import Resources
from chorus_realtime.settings import RealtimeSettings
from chorus_realtime.transport.wsprotocol import TRANSPORT_EXTENSION, FrameTransport
from chorus_realtime.transport.wswriter import Flusher, SocketWriter

__all__ = ["SUBPROTOCOL", "RoomSockets", "room_socket", "token_from_subprotocols"]

logger = logging.getLogger("chorus.realtime.ws")

#: The path of a room's socket: ``/ws/<room>`` (the room is validated after the upgrade).
PATH_PREFIX: Final = "/ws/"
#: The subprotocol a client offers (and the server echoes) to speak this protocol.
SUBPROTOCOL: Final = "chorus.v1"
#: A second offered subprotocol ``bearer.<jwt>`` carries the token (browsers cannot set
#: headers on a WebSocket, and a query string ends up in access logs).
BEARER_PREFIX: Final = "bearer."


def token_from_subprotocols(offered: list[str]) -> str | None:
    """The token in an offered ``bearer.<jwt>`` subprotocol, if any."""
    for value in offered:
        if value.startswith(BEARER_PREFIX) and len(value) > len(BEARER_PREFIX):
            return value[len(BEARER_PREFIX) :]
    return None


def room_of(scope: Scope) -> str | None:
    """The room of a ``/ws/{room}`` path (one non-empty segment), else None."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(PATH_PREFIX):
        return None
    room = path[len(PATH_PREFIX) :]
    return room if room and "/" not in room else None


class RoomSockets:
    """ASGI middleware: ``/ws/{room}`` WebSockets go straight to :func:`room_socket`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.flusher = Flusher()
        self.rooms = RequestContextMiddleware(self._room_socket, access_log=False)

    def _room_socket(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Returns the coroutine rather than awaiting it: one frame fewer per open socket.
        return room_socket(scope, receive, send, self.flusher)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve room sockets; pass everything else on."""
        if scope["type"] == "websocket" and room_of(scope) is not None:
            await self.rooms(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _close(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": code, "reason": reason})


async def _refuse(send: Send, code: int, reason: str, metric: str) -> None:
    REJECTED.labels(metric).inc()
    await _close(send, code, reason)


async def room_socket(scope: Scope, receive: Receive, send: Send, flusher: Flusher) -> None:
    """Join the path's room: live events, history replay from ``?since=``, and sending."""
    room = room_of(scope)
    assert room is not None
    state = scope["app"].state
    rt: Resources = state.resources
    settings: RealtimeSettings = state.settings
    opened = await _open(scope, receive, send, rt=rt, settings=settings, room=room)
    if opened is None:
        return
    claims, since, transport, upgrade = opened
    user = claims.subject
    connection = Connection(
        user=user,
        transport="ws",
        hub=rt.hub,
        bus=rt.bus,
        max_queue_frames=settings.send_queue_max_messages,
        max_queue_bytes=settings.send_queue_max_bytes,
        replay_max=settings.replay_max,
        abort=transport.abort,
        expires_at=claims.expires_at.timestamp(),
        token_version=claims.version,
    )
    session = Session(
        connection=connection,
        room=room,
        bus=rt.bus,
        presence=rt.presence,
        guard=rt.guard,
        assistant=rt.assistant,
        limits=SessionLimits(
            max_message_chars=settings.max_message_bytes,
            messages_per_second=settings.messages_per_second,
            burst=settings.message_burst,
            max_channels=settings.max_channels_per_connection,
        ),
        name=claims.name,
        quotas=rt.quotas,
        upgrade=upgrade,
    )
    writer = SocketWriter(connection, transport, send, flusher)
    rt.registry.add(connection)
    try:
        await _serve(receive, session, since)
    finally:
        connection.close(CloseCode.NORMAL, "")
        rt.registry.remove(connection)
        await session.close()
        await rt.presence.release_connection(user)
        try:
            await asyncio.wait_for(writer.finish(), timeout=settings.drain_seconds + 5.0)
        except TimeoutError:
            connection.abort()


async def _open(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    rt: Resources,
    settings: RealtimeSettings,
    room: str,
) -> tuple[AccessClaims, str | None, FrameTransport, SpanContext | None] | None:
    """Accept and admit the socket: its token, resume offset and transport, or None (closed).

    What only the handshake needed (headers, the offered subprotocols with the token) is
    dropped from the scope, which lives as long as the socket.
    """
    if (await receive())["type"] != "websocket.connect":
        return None
    transport: FrameTransport | None = scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    if transport is None:
        logger.error("no %s extension: serve with server_options(settings)", TRANSPORT_EXTENSION)
        await send({"type": "websocket.close", "code": CloseCode.INTERNAL})
        return None
    query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
    offered: list[str] = list(scope.get("subprotocols", []))
    accept: dict[str, Any] = {
        "type": "websocket.accept",
        "subprotocol": SUBPROTOCOL if SUBPROTOCOL in offered else None,
    }
    await send(accept)
    upgrade = context_from_headers(scope["headers"])
    scope["headers"] = ()
    scope["subprotocols"] = ()
    claims = await _admit(
        rt, settings, send, room, query.get("token") or token_from_subprotocols(offered)
    )
    if claims is None:
        return None
    span = None if upgrade is None else trace.get_current_span(upgrade).get_span_context()
    return claims, query.get("since"), transport, span


async def _admit(
    rt: Resources, settings: RealtimeSettings, send: Send, room: str, token: str | None
) -> AccessClaims | None:
    """The token of an accepted socket, or None after closing it with the reason."""
    try:
        claims = await _authenticate(rt, send, room, token)
    except (RedisError, OSError) as exc:
        logger.warning("refusing a socket, Redis unavailable: %s", exc)
        await _close(send, CloseCode.TRY_AGAIN, "backend unavailable; retry")
        return None
    if claims is None:
        return None
    try:
        admitted = await rt.presence.acquire_connection(
            claims.subject, limit=settings.max_connections_per_user
        )
    except (RedisError, OSError) as exc:
        logger.warning("refusing a socket, Redis unavailable: %s", exc)
        await _close(send, CloseCode.TRY_AGAIN, "backend unavailable; retry")
        return None
    if not admitted:
        await _refuse(send, CloseCode.POLICY, "too many connections", "user_connections")
        return None
    return claims


async def _authenticate(
    rt: Resources, send: Send, room: str, token: str | None
) -> AccessClaims | None:
    """The token's claims if this replica takes the socket, else None (closed with why)."""
    if not rt.registry.accepting:
        await _refuse(send, CloseCode.RESTART, "server restarting", "draining")
        return None
    if not token:
        await _refuse(send, CloseCode.POLICY, "missing token", "auth")
        return None
    try:
        claims = await rt.tokens.verify(token)
    except RevokedTokenError:
        await _refuse(send, CloseCode.POLICY, "token revoked", "auth")
        return None
    except InvalidTokenError:
        await _refuse(send, CloseCode.POLICY, "invalid token", "auth")
        return None
    try:
        room_channel(room)
    except InvalidChannelError:
        await _refuse(send, CloseCode.POLICY, "invalid room name", "invalid_room")
        return None
    return claims


async def _serve(receive: Receive, session: Session, since: str | None) -> None:
    connection = session.connection
    try:
        await session.open(since)
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            raw = message.get("text")
            if raw is None:
                data = message.get("bytes") or b""
                raw = data.decode(errors="replace")
            await session.handle(raw)
    except CloseConnection as exc:
        connection.close(exc.code, exc.reason)
    except HubUnavailableError:
        connection.close(CloseCode.TRY_AGAIN, "subscriptions unavailable; retry")
    except (RedisError, OSError, TimeoutError) as exc:
        logger.warning("closing %s: %s", connection, exc)
        connection.close(CloseCode.TRY_AGAIN, "backend unavailable; retry")
    except Exception:
        if connection.closing:
            return
        logger.exception("closing %s after an error", connection)
        connection.close(CloseCode.INTERNAL, "internal error")
