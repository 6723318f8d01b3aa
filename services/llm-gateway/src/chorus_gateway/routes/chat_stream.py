"""``POST /chat/stream``: the seed's playground endpoint, kept for the browser demo.

``{"content": "…", "model"?: "…", "max_tokens"?: n}`` → ``text/event-stream`` of
``data: <text delta>`` events and a final ``data: [DONE]``. Same credentials, limits,
fallback, usage and cancellation as ``/v1``; the model defaults to
``GATEWAY_PLAYGROUND_MODEL`` (``assistant``). Errors before the stream are Chorus's
``{"error": {"code", "message"}}`` (this route is not OpenAI's); after it,
``event: error`` with the error object, then ``data: [DONE]``.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from chorus_gateway.domain.chat_request import parse_playground_request
from chorus_gateway.domain.errors import GatewayError, service_unavailable
from chorus_gateway.domain.gateway import Gateway
from chorus_gateway.transport.asgi import (
    AsgiClientStream,
    header,
    read_body,
    run_interruptible,
    send_error,
)
from chorus_gateway.transport.sse import TextDeltas

__all__ = ["ChatStream"]

logger = logging.getLogger("chorus.gateway.routes")


class ChatStream:
    """The ASGI endpoint (mounted as a Starlette ``Route``)."""

    def __init__(self, *, max_body_bytes: int, model: str) -> None:
        self._max_body = max_body_bytes
        self._model = model

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        started = time.perf_counter()
        gateway: Gateway = scope["app"].state.resources.gateway
        try:
            principal = gateway.authenticate(header(scope, b"authorization"))
            raw = await read_body(receive, self._max_body)
            if raw is None:
                return
            request = parse_playground_request(raw, default_model=self._model)
            call = await gateway.prepare(principal, request, started=started)
        except GatewayError as error:
            await send_error(send, error, error.chorus_body())
            return
        except RedisError as exc:
            logger.warning("rate limiter unavailable: %s", exc)
            unavailable = service_unavailable()
            await send_error(send, unavailable, unavailable.chorus_body())
            return
        relay = gateway.relay(call, AsgiClientStream(send), TextDeltas)
        await run_interruptible(relay, relay.run(), receive)
