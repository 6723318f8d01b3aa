"""``/ws/{room}``: the WebSocket of a room (see the README for the protocol).

Authentication happens after the upgrade so that a refusal is a close code the client can
read (1008 with a reason) rather than an opaque failed handshake; nothing is joined or
subscribed before the token is verified.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketState

from chorus_common.events import InvalidChannelError, room_channel
from chorus_common.tokens import InvalidTokenError
from chorus_realtime.deps import RealtimeDep, SettingsDep
from chorus_realtime.domain.connection import CloseCode, Connection
from chorus_realtime.domain.hub import HubUnavailableError
from chorus_realtime.domain.session import CloseConnection, Session, SessionLimits
from chorus_realtime.metrics import REJECTED
from chorus_realtime.wsprotocol import TRANSPORT_EXTENSION

__all__ = ["SUBPROTOCOL", "router", "token_from_subprotocols"]

logger = logging.getLogger("chorus.realtime.ws")

router = APIRouter(tags=["realtime"])

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


def _abort_hook(websocket: WebSocket) -> Callable[[], None] | None:
    transport = websocket.scope.get("extensions", {}).get(TRANSPORT_EXTENSION)
    return transport.get("abort") if isinstance(transport, dict) else None


async def _refuse(websocket: WebSocket, code: int, reason: str, metric: str) -> None:
    REJECTED.labels(metric).inc()
    await websocket.close(code, reason)


@router.websocket("/ws/{room}")
async def room_socket(
    websocket: WebSocket, room: str, rt: RealtimeDep, settings: SettingsDep
) -> None:
    """Join ``room``: live events, history replay from ``?since=``, and sending."""
    offered = list(websocket.scope.get("subprotocols", []))
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    if not rt.registry.accepting:
        await _refuse(websocket, CloseCode.RESTART, "server restarting", "draining")
        return
    token = websocket.query_params.get("token") or token_from_subprotocols(offered)
    if not token:
        await _refuse(websocket, CloseCode.POLICY, "missing token", "auth")
        return
    try:
        user = rt.tokens.verify(token).subject
    except InvalidTokenError:
        await _refuse(websocket, CloseCode.POLICY, "invalid token", "auth")
        return
    try:
        room_channel(room)
    except InvalidChannelError:
        await _refuse(websocket, CloseCode.POLICY, "invalid room name", "invalid_room")
        return
    if not await rt.presence.acquire_connection(user, limit=settings.max_connections_per_user):
        await _refuse(websocket, CloseCode.POLICY, "too many connections", "user_connections")
        return
    connection = Connection(
        user=user,
        transport="ws",
        hub=rt.hub,
        bus=rt.bus,
        max_queue_frames=settings.send_queue_max_messages,
        max_queue_bytes=settings.send_queue_max_bytes,
        replay_max=settings.replay_max,
        abort=_abort_hook(websocket),
    )
    session = Session(
        connection=connection,
        room=room,
        bus=rt.bus,
        presence=rt.presence,
        assistant=rt.assistant,
        limits=SessionLimits(
            max_message_chars=settings.max_message_bytes,
            messages_per_second=settings.messages_per_second,
            burst=settings.message_burst,
            max_channels=settings.max_channels_per_connection,
        ),
    )
    rt.registry.add(connection)
    writer = asyncio.create_task(_write(websocket, connection), name=f"ws-writer:{connection.id}")
    try:
        await _serve(websocket, session, websocket.query_params.get("since"))
    finally:
        connection.close(CloseCode.NORMAL, "")
        rt.registry.remove(connection)
        await session.close()
        await rt.presence.release_connection(user)
        try:
            await asyncio.wait_for(writer, timeout=settings.drain_seconds + 5.0)
        except TimeoutError:
            connection.abort()


async def _serve(websocket: WebSocket, session: Session, since: str | None) -> None:
    connection = session.connection
    try:
        await session.open(since)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
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
    except (ConnectionError, OSError, TimeoutError) as exc:
        logger.warning("closing %s: %s", connection, exc)
        connection.close(CloseCode.TRY_AGAIN, "backend unavailable; retry")
    except Exception:
        if connection.closing:
            return
        logger.exception("closing %s after an error", connection)
        connection.close(CloseCode.INTERNAL, "internal error")


async def _write(websocket: WebSocket, connection: Connection) -> None:
    """The connection's writer: its frames, in order, then the close frame."""
    send = websocket.send
    try:
        async for frame in connection.frames():
            await send(frame.message)
        if websocket.application_state is WebSocketState.CONNECTED:
            reason = connection.close_reason_with_position()
            await websocket.close(connection.close_code or CloseCode.NORMAL, reason)
    except Exception as exc:  # the client went away mid-write
        logger.debug("writer of %s ended: %s", connection, exc)
        connection.close(CloseCode.NORMAL, "")
    finally:
        with contextlib.suppress(Exception):
            connection.outbox.clear()
