"""What both completion routes do before the call: authenticate, read, validate, admit.

In OpenAI's order — 401 → 413/400 → 403/404 → 429 — and with each route's error shape:
``/v1`` answers OpenAI's, ``/chat/stream`` Chorus's. Redis out of reach (the limiter, a
token's revocation) is a 503, never a 500 and never an unchecked or unmetered call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from chorus_gateway.domain.call import Call
from chorus_gateway.domain.chat_request import ChatRequest
from chorus_gateway.domain.errors import GatewayError, service_unavailable
from chorus_gateway.domain.gateway import Gateway
from chorus_gateway.transport.asgi import header, read_body, send_error

__all__ = ["ErrorBody", "admit"]

logger = logging.getLogger("chorus.gateway.routes")

#: The body of an error response before the call (None: OpenAI's shape).
ErrorBody = Callable[[GatewayError], bytes | None]


async def admit(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    max_body: int,
    parse: Callable[[bytes], ChatRequest],
    error_body: ErrorBody,
) -> tuple[Gateway, Call] | None:
    """The gateway and the admitted call; None once a refusal is answered (or the client left)."""
    started = time.perf_counter()
    gateway: Gateway = scope["app"].state.resources.gateway
    try:
        principal = await gateway.authenticate(header(scope, b"authorization"))
        raw = await read_body(receive, max_body)
        if raw is None:
            return None
        call = await gateway.prepare(principal, parse(raw), started=started)
    except GatewayError as error:
        await send_error(send, error, error_body(error))
        return None
    except RedisError as exc:
        logger.warning("rate limiter unavailable: %s", exc)
        unavailable = service_unavailable()
        await send_error(send, unavailable, error_body(unavailable))
        return None
    return gateway, call
