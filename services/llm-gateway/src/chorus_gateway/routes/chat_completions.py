"""``POST /v1/chat/completions`` — and ``/v1/completions``, ``/v1/embeddings``,
``/v1/responses`` — OpenAI's endpoints, streamed or not, on raw ASGI paths.

One class serves them all: each differs only in how its body is parsed (its prompt field,
its cap, its upstream path: ``domain.chat_request``) and how its stream is read
(``transport.sse``). Auth, limits, budgets, fallback, usage and metrics are the same.

Validate (401 → 400 → 403/404 → 429, as OpenAI orders them) → call the domain → write.
Errors before the response starts are OpenAI's JSON with the right status; a stream's
later errors are in-stream events (``domain.relay``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from starlette.types import Receive, Scope, Send

from chorus_gateway.domain.chat_request import ChatRequest, parse_chat_request
from chorus_gateway.domain.errors import GatewayError
from chorus_gateway.routes.admission import admit
from chorus_gateway.transport.asgi import (
    AsgiClientStream,
    run_interruptible,
    send_json,
)
from chorus_gateway.transport.sse import OpenAIPassThrough, ResponsesPassThrough, StreamScanner

__all__ = ["ChatCompletions"]


class ChatCompletions:
    """The ASGI endpoint (mounted as a Starlette ``Route``)."""

    def __init__(
        self,
        *,
        max_body_bytes: int,
        parse: Callable[[bytes], ChatRequest] = parse_chat_request,
        responses_stream: bool = False,
    ) -> None:
        self._max_body = max_body_bytes
        self._parse = parse
        self._responses_stream = responses_stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        admitted = await admit(
            scope,
            receive,
            send,
            max_body=self._max_body,
            parse=self._parse,
            error_body=_openai_shape,
        )
        if admitted is None:
            return
        gateway, call = admitted
        if call.request.stream:
            scanner: Callable[[], StreamScanner] = (
                ResponsesPassThrough if self._responses_stream else _scanner(call.request)
            )
            relay = gateway.relay(call, AsgiClientStream(send), scanner)
            await run_interruptible(relay, relay.run(), receive)
            return
        completion = gateway.completion(call)
        answer = await run_interruptible(completion, completion.run(), receive)
        if answer is not None:
            await send_json(send, answer.status, answer.body, answer.headers)


def _openai_shape(error: GatewayError) -> None:
    """OpenAI's error shape: ``send_error``'s default."""


def _scanner(request: ChatRequest) -> Callable[[], StreamScanner]:
    return partial(OpenAIPassThrough, wants_usage=request.wants_usage)
