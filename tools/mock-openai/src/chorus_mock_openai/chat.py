"""`POST /v1/chat/completions`: admission, then a streamed or whole completion.

The hot path is written for throughput: chunk frames are pre-encoded
(`completions.ChunkFrames`), each token is one `send()` of one bytes object,
and with zero delays the stream is written without yielding to the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from chorus_mock_openai.asgi import Headers, Receive, Scope, Send, read_body
from chorus_mock_openai.auth import has_bearer_token
from chorus_mock_openai.completions import (
    DONE,
    ChunkFrames,
    Usage,
    completion_body,
    new_completion_id,
)
from chorus_mock_openai.disconnect import DisconnectWatcher
from chorus_mock_openai.errors import (
    OpenAIError,
    invalid_request,
    missing_api_key,
    model_not_found,
    rate_limited,
    server_error,
)
from chorus_mock_openai.faults import MID_STREAM_FAULTS, Fault
from chorus_mock_openai.overrides import HEADER_PREFIX, Overrides, from_directives, from_headers
from chorus_mock_openai.plan import Plan, make_plan
from chorus_mock_openai.recorder import Outcome, RequestRecord, new_request_id
from chorus_mock_openai.state import MockState
from chorus_mock_openai.tokens import completion_text, encoded_token
from chorus_mock_openai.validation import ChatRequest, parse_chat_request

__all__ = ["ChatCompletions"]

_HEADER_PREFIX = HEADER_PREFIX.encode()
_OPENAI_VERSION = (b"openai-version", b"2020-10-01")
_SSE_CONTENT_TYPE = (b"content-type", b"text/event-stream; charset=utf-8")
_JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class ChatCompletions:
    """The chat completions endpoint, bound to the mock's runtime state."""

    def __init__(self, state: MockState) -> None:
        self._state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one chat completion request and record what happened to it."""
        request_id = new_request_id()
        recorder = self._state.recorder
        record = recorder.start(request_id)
        try:
            await self._serve(scope, receive, send, record)
        finally:
            recorder.settled()

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, record: RequestRecord
    ) -> None:
        id_header = (b"x-request-id", record.request_id.encode())
        try:
            admitted = await self._admit(scope, receive, record)
        except OpenAIError as error:
            record.mark_headers(error.status)
            record.end(Outcome.REJECTED, error.message)
            await error.send(send, [id_header])
            return
        if admitted is None:
            record.client_disconnected(time.time(), time.monotonic())
            return
        request, overrides = admitted
        plan = self._plan(request, overrides, record)
        if plan.fault in (Fault.ERROR_BEFORE_START, Fault.RATE_LIMIT):
            refusal = (
                server_error()
                if plan.fault is Fault.ERROR_BEFORE_START
                else rate_limited(request.model, plan.retry_after_s)
            )
            record.mark_headers(refusal.status)
            await refusal.send(send, [id_header])
            record.end(Outcome.FAULT, refusal.message)
            return
        await self._generate(
            request=request,
            plan=plan,
            record=record,
            receive=receive,
            send=send,
            id_header=id_header,
        )

    async def _admit(
        self, scope: Scope, receive: Receive, record: RequestRecord
    ) -> tuple[ChatRequest, Overrides] | None:
        """Check auth, body and model; None if the client left while sending the body."""
        authorization, client_request_id, mock_headers = _scan_headers(scope["headers"])
        record.client_request_id = client_request_id
        record.traceparent = _header(scope["headers"], b"traceparent")
        config = self._state.config
        if config.require_auth and not has_bearer_token(authorization):
            raise missing_api_key()
        body = await read_body(receive)
        if body is None:
            return None
        request = parse_chat_request(body)
        record.model = request.model
        record.stream = request.stream
        record.include_usage = request.include_usage
        if not config.accepts_model(request.model):
            raise model_not_found(request.model)
        try:
            overrides = from_directives(request.last_user_text).over(from_headers(mock_headers))
        except ValueError as exc:
            raise invalid_request(f"Invalid chorus-mock override: {exc}") from None
        return request, overrides

    def _plan(self, request: ChatRequest, overrides: Overrides, record: RequestRecord) -> Plan:
        rule = None if overrides.fault is not None else self._state.faults.take(request.model)
        plan = make_plan(self._state.config, request, overrides, rule)
        record.fault = plan.fault.value if plan.fault is not None else None
        record.tag = plan.tag
        record.ttft_ms = plan.ttft_s * 1000
        record.inter_token_ms = plan.inter_token_s * 1000
        record.tokens_planned = plan.tokens
        record.prompt_tokens = request.prompt_tokens
        return plan

    async def _generate(
        self,
        *,
        request: ChatRequest,
        plan: Plan,
        record: RequestRecord,
        receive: Receive,
        send: Send,
        id_header: tuple[bytes, bytes],
    ) -> None:
        watcher = DisconnectWatcher(receive)
        watcher.start()
        try:
            if request.stream:
                await self._stream(request, plan, record, send, id_header)
            else:
                await self._respond(request, plan, record, send, id_header)
        except asyncio.CancelledError:
            if not watcher.absorb():
                raise
            assert watcher.at is not None
            assert watcher.at_monotonic is not None
            record.client_disconnected(watcher.at, watcher.at_monotonic)
        finally:
            watcher.stop()
            if record.outcome is Outcome.IN_PROGRESS:
                record.end(Outcome.FAULT, "the handler exited abnormally")

    async def _stream(
        self,
        request: ChatRequest,
        plan: Plan,
        record: RequestRecord,
        send: Send,
        id_header: tuple[bytes, bytes],
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        frames = ChunkFrames(
            completion_id=new_completion_id(),
            created=int(time.time()),
            model=request.model,
            system_fingerprint=self._state.config.system_fingerprint,
            include_usage=request.include_usage,
        )
        timed = plan.ttft_s > 0 or plan.inter_token_s > 0
        if plan.fault is Fault.HANG:
            await _forever()
        if plan.fault is Fault.SLOW_HEADERS:
            await _sleep_until(start + plan.ttft_s)
        headers = [_SSE_CONTENT_TYPE, id_header, _OPENAI_VERSION, _processing_ms(record)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        record.mark_headers(200)

        role = frames.role()
        for index in range(plan.tokens_before_fault):
            if timed:
                await _sleep_until(start + plan.token_deadline(index))
            chunk = frames.content(encoded_token(index))
            if index == 0:
                chunk = role + chunk
                record.mark_first_token()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            record.tokens_sent = index + 1

        if plan.fault in MID_STREAM_FAULTS:
            await self._break_stream(plan, frames, record, send)
            return
        tail = [frames.finish(plan.finish_reason)]
        if plan.tokens == 0:
            if timed:
                await _sleep_until(start + plan.ttft_s)
            tail.insert(0, role)
        if request.include_usage and plan.fault is not Fault.MISSING_USAGE:
            tail.append(frames.usage(Usage(request.prompt_tokens, plan.tokens)))
            record.usage_sent = True
        tail.append(DONE)
        await send({"type": "http.response.body", "body": b"".join(tail), "more_body": False})
        record.finish_reason = plan.finish_reason
        record.end(Outcome.COMPLETED)

    async def _break_stream(
        self, plan: Plan, frames: ChunkFrames, record: RequestRecord, send: Send
    ) -> None:
        if plan.fault is Fault.ERROR_MID_STREAM:
            error = server_error()
            await send(
                {"type": "http.response.body", "body": frames.error(error), "more_body": False}
            )
            record.end(Outcome.FAULT, error.message)
        elif plan.fault is Fault.DROP:
            # Returning with the body unfinished makes uvicorn close the
            # connection, so the client sees a chunked body that never ends.
            self._state.drop_log_filter.expect_drop()
            record.end(Outcome.FAULT, "connection dropped mid-stream")
        else:
            await _forever()

    async def _respond(
        self,
        request: ChatRequest,
        plan: Plan,
        record: RequestRecord,
        send: Send,
        id_header: tuple[bytes, bytes],
    ) -> None:
        if plan.fault is Fault.HANG:
            await _forever()
        if plan.duration_s > 0:
            await asyncio.sleep(plan.duration_s)
        if plan.fault is Fault.ERROR_MID_STREAM:
            error = server_error()
            record.mark_headers(error.status)
            await error.send(send, [id_header])
            record.end(Outcome.FAULT, error.message)
            return
        usage = (
            None if plan.fault is Fault.MISSING_USAGE else Usage(request.prompt_tokens, plan.tokens)
        )
        body = completion_body(
            completion_id=new_completion_id(),
            created=int(time.time()),
            model=request.model,
            system_fingerprint=self._state.config.system_fingerprint,
            content=completion_text(plan.tokens),
            finish_reason=plan.finish_reason,
            usage=usage,
        )
        headers: Headers = [
            _JSON_CONTENT_TYPE,
            (b"content-length", b"%d" % len(body)),
            id_header,
            _OPENAI_VERSION,
            _processing_ms(record),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        record.mark_headers(200)
        if plan.fault in (Fault.DROP, Fault.HANG_MID_STREAM):
            half = body[: len(body) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
            if plan.fault is Fault.HANG_MID_STREAM:
                await _forever()
            self._state.drop_log_filter.expect_drop()
            record.end(Outcome.FAULT, "connection dropped mid-body")
            return
        await send({"type": "http.response.body", "body": body})
        record.mark_first_token()
        record.tokens_sent = plan.tokens
        record.usage_sent = usage is not None
        record.finish_reason = plan.finish_reason
        record.end(Outcome.COMPLETED)


def _header(raw: Iterable[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    """The first value of header ``wanted``, decoded."""
    for name, value in raw:
        if name == wanted:
            return value.decode("latin-1")
    return None


def _scan_headers(
    raw: Iterable[tuple[bytes, bytes]],
) -> tuple[bytes | None, str | None, list[tuple[str, str]]]:
    """The Authorization value, the client's request id and the `x-mock-*` headers."""
    authorization = None
    client_request_id = None
    mock_headers: list[tuple[str, str]] = []
    for name, value in raw:
        if name == b"authorization":
            authorization = value
        elif name.startswith(_HEADER_PREFIX):
            mock_headers.append((name.decode("latin-1"), value.decode("latin-1")))
        elif name == b"x-client-request-id":
            client_request_id = value.decode("latin-1")
    return authorization, client_request_id, mock_headers


def _processing_ms(record: RequestRecord) -> tuple[bytes, bytes]:
    elapsed_ms = (time.monotonic() - record.started_monotonic) * 1000
    return (b"openai-processing-ms", b"%d" % elapsed_ms)


async def _sleep_until(deadline: float) -> None:
    """Sleep until loop time `deadline`; scheduling against the start avoids drift."""
    delay = deadline - asyncio.get_running_loop().time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _forever() -> None:
    """Wait until cancelled (by the disconnect watcher, or by server shutdown)."""
    await asyncio.get_running_loop().create_future()
