"""``POST /chat/stream``: the playground's simple streaming endpoint (the browser demo).

``{"content": "…", "model"?: "…", "max_tokens"?: n}`` → ``text/event-stream`` of
``data: <text delta>`` events and a final ``data: [DONE]``. Same credentials, limits,
fallback, usage and cancellation as ``/v1``; the model defaults to
``GATEWAY_PLAYGROUND_MODEL`` (``assistant``). Errors before the stream are Chorus's
``{"error": {"code", "message"}}`` (this route is not OpenAI's); after it,
``event: error`` with the error object, then ``data: [DONE]``.
"""

from __future__ import annotations

from functools import partial

from starlette.types import Receive, Scope, Send

from chorus_gateway.domain.chat_request import parse_playground_request
from chorus_gateway.domain.errors import GatewayError
from chorus_gateway.routes.admission import admit
from chorus_gateway.transport.asgi import (
    AsgiClientStream,
    run_interruptible,
)
from chorus_gateway.transport.sse import TextDeltas

__all__ = ["ChatStream"]


class ChatStream:
    """The ASGI endpoint (mounted as a Starlette ``Route``)."""

    def __init__(self, *, max_body_bytes: int, model: str) -> None:
        self._max_body = max_body_bytes
        self._parse = partial(parse_playground_request, default_model=model)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        admitted = await admit(
            scope,
            receive,
            send,
            max_body=self._max_body,
            parse=self._parse,
            error_body=GatewayError.chorus_body,
        )
        if admitted is None:
            return
        gateway, call = admitted
        relay = gateway.relay(call, AsgiClientStream(send), TextDeltas)
        await run_interruptible(relay, relay.run(), receive)
