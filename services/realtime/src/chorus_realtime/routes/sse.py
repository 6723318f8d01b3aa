"""``/events`` and ``/events/{user_id}``: a user's notifications as Server-Sent Events.

The stream is the user's ``user:<id>`` channel. Every event carries ``id:`` = its stream
id, so a reconnecting ``EventSource`` sends ``Last-Event-ID`` and resumes exactly where
it stopped, on any replica (``?last_event_id=`` does the same for clients that cannot
set the header). The first event says whether the resume ``recovered`` everything. The
stream ends when its token expires or is revoked (a reconnect with it is then a 401).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, HTTPException, Query, Request
from sse_starlette.sse import EventSourceResponse

from chorus_common.events import user_channel
from chorus_common.tokens import InvalidTokenError, RevokedTokenError, bearer_token
from chorus_realtime.deps import ResourcesDep, SettingsDep
from chorus_realtime.domain.connection import Connection
from chorus_realtime.domain.hub import HubUnavailableError
from chorus_realtime.metrics import REJECTED
from chorus_realtime.resources import Resources

__all__ = ["router"]

logger = logging.getLogger("chorus.realtime.sse")

router = APIRouter(tags=["realtime"])

#: Seconds one write may block before the stream is given up as stalled.
SEND_TIMEOUT = 30.0


def _refuse(status: int, code: str, message: str, metric: str) -> HTTPException:
    REJECTED.labels(metric).inc()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return HTTPException(status, {"code": code, "message": message}, headers=headers)


async def _stream(rt: Resources, connection: Connection) -> AsyncIterator[bytes]:
    try:
        async for frame in connection.frames():
            yield frame.sse()
    finally:
        # Synchronous cleanup first: a cancelled generator may not get to await.
        connection.close(1000, "")
        connection.unsubscribe_all()
        rt.registry.remove(connection)
        rt.spawn(rt.presence.release_connection(connection.user), name="sse-release")


async def _open(
    request: Request, rt: Resources, settings: SettingsDep, path_user: str | None, token: str | None
) -> EventSourceResponse:
    raw = bearer_token(request.headers.get("authorization")) or token
    if not raw:
        raise _refuse(401, "unauthorized", "a bearer token is required", "auth")
    try:
        claims = await rt.tokens.verify(raw)
    except RevokedTokenError:
        raise _refuse(401, "unauthorized", "token revoked", "auth") from None
    except InvalidTokenError:
        raise _refuse(401, "unauthorized", "invalid token", "auth") from None
    user = claims.subject
    if path_user is not None and path_user != user:
        raise _refuse(403, "forbidden", "you can only stream your own events", "forbidden")
    if not rt.registry.accepting:
        raise _refuse(503, "draining", "this replica is restarting; reconnect", "draining")
    if not await rt.presence.acquire_connection(user, limit=settings.max_connections_per_user):
        raise _refuse(429, "too_many_connections", "too many open connections", "user_connections")
    connection = Connection(
        user=user,
        transport="sse",
        hub=rt.hub,
        bus=rt.bus,
        max_queue_frames=settings.send_queue_max_messages,
        max_queue_bytes=settings.send_queue_max_bytes,
        replay_max=settings.replay_max,
        expires_at=claims.expires_at.timestamp(),
        token_version=claims.version,
    )
    since = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    rt.registry.add(connection)
    try:
        await connection.subscribe(user_channel(user), since or None)
    except BaseException as exc:
        connection.close(1000, "")
        rt.registry.remove(connection)
        rt.spawn(rt.presence.release_connection(user), name="sse-release")
        if isinstance(exc, HubUnavailableError):
            raise HTTPException(503, "subscriptions unavailable; retry") from exc
        raise
    return EventSourceResponse(
        _stream(rt, connection),
        ping=settings.sse_ping_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        send_timeout=SEND_TIMEOUT,
    )


@router.get("/events", summary="Stream your notifications (SSE)")
async def my_events(
    request: Request,
    rt: ResourcesDep,
    settings: SettingsDep,
    token: str | None = Query(default=None, description="JWT, for clients without headers"),
    last_event_id: str | None = Query(default=None, description="fallback for Last-Event-ID"),
) -> EventSourceResponse:
    """The token's user's ``user:<id>`` channel."""
    return await _open(request, rt, settings, None, token)


@router.get("/events/{user_id}", summary="Stream a user's notifications (SSE; yours only)")
async def user_events(  # noqa: PLR0917 - FastAPI parameters
    user_id: str,
    request: Request,
    rt: ResourcesDep,
    settings: SettingsDep,
    token: str | None = Query(default=None),
    last_event_id: str | None = Query(default=None),
) -> EventSourceResponse:
    """Same as ``/events``; 403 unless ``user_id`` is the token's user."""
    return await _open(request, rt, settings, user_id, token)
