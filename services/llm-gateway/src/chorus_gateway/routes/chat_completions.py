"""``POST /v1/chat/completions``: OpenAI's endpoint, streamed or not, on a raw ASGI path.

Validate (401 → 400 → 403/404 → 429, as OpenAI orders them) → call the domain → write.
Errors before the response starts are OpenAI's JSON with the right status; a stream's
later errors are in-stream events (``domain.relay``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from chorus_gateway.domain.chat_request import ChatRequest, parse_chat_request
from chorus_gateway.domain.errors import GatewayError, service_unavailable
from chorus_gateway.domain.gateway import Gateway
from chorus_gateway.transport.asgi import (
    AsgiClientStream,
    header,
    read_body,
    run_interruptible,
    send_error,
    send_json,
)
from chorus_gateway.transport.sse import OpenAIPassThrough, StreamScanner

__all__ = ["ChatCompletions"]

logger = logging.getLogger("chorus.gateway.routes")


class ChatCompletions:
    """The ASGI endpoint (mounted as a Starlette ``Route``)."""

    def __init__(self, *, max_body_bytes: int) -> None:
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        started = time.perf_counter()
        gateway: Gateway = scope["app"].state.resources.gateway
        try:
            principal = gateway.authenticate(header(scope, b"authorization"))
            raw = await read_body(receive, self._max_body)
            if raw is None:
                return
            request = parse_chat_request(raw)
            call = await gateway.prepare(principal, request, started=started)
        except GatewayError as error:
            await send_error(send, error)
            return
        except RedisError as exc:
            logger.warning("rate limiter unavailable: %s", exc)
            await send_error(send, service_unavailable())
            return
        if request.stream:
            relay = gateway.relay(call, AsgiClientStream(send), _scanner(request))
            await run_interruptible(relay, relay.run(), receive)
            return
        completion = gateway.completion(call)
        answer = await run_interruptible(completion, completion.run(), receive)
        if answer is not None:
            await send_json(send, answer.status, answer.body, answer.headers)


def _scanner(request: ChatRequest) -> Callable[[], StreamScanner]:
    return partial(OpenAIPassThrough, wants_usage=request.wants_usage)
