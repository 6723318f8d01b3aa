"""Relaying a streamed completion: first byte with fallback, then pure pass-through.

Phase 1, until the first chunk: the provider is asked (``include_usage`` always on) and
its first data event awaited under the time-to-first-token timeout. Nothing has reached
the client yet, so a failure — connection error, 5xx/429, an error event, a dropped or
timed-out stream — moves to the next attempt (``fallback``). If the wait outlasts
``GATEWAY_KEEPALIVE_SECONDS`` the response headers go out and ``: keep-alive`` comments
keep proxies and clients from timing out; a later failure is then told in-stream. A
client error (400 from the provider) is relayed as is, never retried.

Phase 2, after the first chunk: every network read from the provider is cut at its last
complete event and written to the client at once (``sse``); the idle and total timeouts
are watched by a lazy timer; a client disconnect interrupts the read and closes the
upstream connection in the same loop turn. A failure now can no longer be hidden: the
client gets ``data: {"error": …}`` then ``data: [DONE]``.

What a provider says when it fails — its error body, its error event mid-stream, the
connection error — is logged with the request id, never relayed: clients get the
gateway's own message and code (``upstream_error``, ``upstream_timeout``). Only a refusal
of the request itself (a provider's 400/413/422 with OpenAI's error object) reaches the
client as the provider worded it, since it is about what the client sent.

With tracing on, each attempt is a GenAI client span ``chat <upstream model>`` (a child
of the request's server span) whose ``traceparent`` goes to the provider: a failed
attempt ends with its error, the one that answers gets the time to its first chunk and,
when the stream ends, the usage and the outcome.

``x-chorus-overhead-ms`` on a stream is the gateway's share of the time to first byte:
time from the request's arrival to the headers, minus the time spent waiting on
providers (every attempt's request-to-first-chunk). Headers forced out early by a
keep-alive carry the admission overhead only (arrival to the first upstream request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import httpx2
from opentelemetry import trace
from opentelemetry.trace import Span
from redis.exceptions import RedisError

from chorus_common.genai_tracing import first_chunk
from chorus_common.tracing import child_tracer, exemplar, record_failure
from chorus_gateway.domain.call import (
    CLIENT_CLOSED,
    COMPLETED,
    CUT_OFF,
    ERROR,
    Accounting,
    Call,
    Ending,
    Headers,
    end_chat_span,
    response_headers,
    start_attempt_span,
    usage_counts,
)
from chorus_gateway.domain.errors import (
    GatewayError,
    bad_gateway,
    gateway_timeout,
    service_unavailable,
)
from chorus_gateway.domain.fallback import Fallback, Refusal
from chorus_gateway.domain.interrupt import (
    CLIENT_DISCONNECTED,
    TIMEOUT_IDLE,
    Interruptible,
    Watchdog,
)
from chorus_gateway.domain.routing import Attempt, ProviderPool
from chorus_gateway.domain.token_estimate import estimate_completion_tokens
from chorus_gateway.domain.upstream import UpstreamFailure
from chorus_gateway.metrics import (
    OVERHEAD,
    STREAMS_IN_FLIGHT,
    TTFT,
    UPSTREAM_ERRORS,
)
from chorus_gateway.transport.http1 import StreamResponse
from chorus_gateway.transport.sse import KEEPALIVE, StreamScanner

__all__ = ["ClientStream", "StreamRelay"]

_JSON = (b"content-type", b"application/json")
logger = logging.getLogger("chorus.gateway.relay")


async def _discard(first: asyncio.Future[_Opened]) -> None:
    """Stop an upstream attempt: cancel it, or close the stream it already opened."""
    if not first.done():
        first.cancel()
    with contextlib.suppress(asyncio.CancelledError, UpstreamFailure):
        opened = await first
        await opened.response.aclose()


class ClientStream(Protocol):
    """Where the relay writes the response (the route adapts ASGI ``send``)."""

    async def start(self, status: int, headers: Headers) -> None:
        """Send the status and headers."""

    async def write(self, data: bytes) -> None:
        """Send body bytes now."""

    async def end(self, data: bytes = b"") -> None:
        """Send the last body bytes and finish the response."""


class _Refused(Exception):
    """The admission run alongside the first attempt refused the request (or failed)."""

    def __init__(self, error: GatewayError, provider: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.provider = provider


@dataclass(slots=True)
class _Opened:
    response: StreamResponse
    chunks: AsyncIterator[bytes]
    first: bytes | None
    waited: float


class StreamRelay(Interruptible):
    """One streamed completion, from the first attempt to the last byte."""

    def __init__(
        self,
        call: Call,
        client: ClientStream,
        *,
        pool: ProviderPool,
        accounting: Accounting,
        scanner: Callable[[], StreamScanner],
        keepalive: float,
    ) -> None:
        super().__init__()
        self.call = call
        self.client = client
        self._pool = pool
        self._accounting = accounting
        self._new_scanner = scanner
        self._scanner = scanner()
        self._keepalive = keepalive
        self._loop = asyncio.get_running_loop()
        self._next_keepalive = self._loop.time() + keepalive
        self._headers_sent = False
        self._upstream_wait = 0.0
        self._first_request_at: float | None = None
        #: The span of the attempt under way or streaming (tracing on).
        self._span: Span | None = None

    async def run(self) -> None:
        """Serve the stream; returns once the client has its last byte (or left)."""
        self.bind()
        STREAMS_IN_FLIGHT.inc()
        ending = Ending(status=500, outcome=ERROR)
        try:
            ending = await self._run()
        finally:
            STREAMS_IN_FLIGHT.dec()
            await self.close_interrupts()
            if self._span is not None:
                end_chat_span(self._span, ending)
            await self._accounting.finish(self.call, ending)

    async def _run(self) -> Ending:
        fallback = Fallback(self._pool, self.call.route, request_id=self.call.request_id)
        try:
            outcome = await fallback.first(self._open_afresh)
            if isinstance(outcome, Refusal):
                return await self._refuse(outcome.error, outcome.provider)
            return await self._stream(outcome.attempt, outcome.result)
        except _Refused as exc:
            # The provider already had the request (cancelled at once): bill the prompt.
            ending = await self._refuse(exc.error, exc.provider)
            ending.engaged = True
            ending.prompt_tokens = self.call.request.prompt_estimate
            ending.estimated = True
            return ending
        except asyncio.CancelledError:
            attempt = fallback.current
            if attempt is not None:
                attempt.breaker.release()
            if not self.absorb():
                raise
            await self.close_interrupts()
            return self._cut_off_before_start(attempt)

    # -- phase 1: the first chunk -----------------------------------------------------------

    async def _open_afresh(self, attempt: Attempt) -> _Opened:
        """An attempt: a new scanner (nothing of an earlier attempt's stream counts), open."""
        self._scanner = self._new_scanner()
        tracing = child_tracer()
        if tracing is None:
            return await self._open(attempt)
        span = self._span = start_attempt_span(tracing, self.call, attempt)
        try:
            with trace.use_span(span):  # the upstream request carries this span
                opened = await self._open(attempt)
        except BaseException as exc:
            self._span = None
            record_failure(span, exc)
            span.end()
            raise
        first_chunk(span, opened.waited)
        return opened

    async def _open(self, attempt: Attempt) -> _Opened:
        upstream = attempt.upstream
        config = upstream.config
        body = self.call.request.upstream_body(
            attempt.target.upstream_model, config.max_tokens_field, self.call.default_max_tokens
        )
        timeouts = config.timeouts
        sent = self._loop.time()
        if self._first_request_at is None:
            self._first_request_at = time.perf_counter()
        deadline = sent + min(timeouts.ttft, timeouts.total)
        first = asyncio.ensure_future(self._first_chunk(attempt, body))
        try:
            if self.call.admission is None:
                await self._admission_alongside(attempt, first)
            while True:
                wait = min(deadline, self._next_keepalive) - self._loop.time()
                if wait > 0:
                    done, _ = await asyncio.wait((first,), timeout=wait)
                    if done:
                        return first.result()
                if self._loop.time() >= deadline:
                    raise UpstreamFailure(
                        "timeout_ttft",
                        f"no first token from {attempt.provider} within {timeouts.ttft:g}s",
                    )
                await self._send_keepalive()
        finally:
            self._upstream_wait += self._loop.time() - sent
            if not first.done():
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError, UpstreamFailure):
                    await first

    async def _admission_alongside(self, attempt: Attempt, first: asyncio.Future[_Opened]) -> None:
        """Wait for the admission running while ``first`` goes upstream; undo on refusal."""
        try:
            await self.call.admitted()
            return
        except GatewayError as exc:
            error = exc
        except RedisError as exc:
            logger.warning("rate limiter unavailable: %s", exc)
            error = service_unavailable()
        except BaseException:
            await _discard(first)
            raise
        await _discard(first)
        attempt.breaker.release()
        raise _Refused(error, attempt.provider)

    async def _first_chunk(self, attempt: Attempt, body: bytes) -> _Opened:
        sent = self._loop.time()
        response = await attempt.upstream.send_stream(body, self.call.request.path)
        chunks = response.aiter_raw()
        scanner = self._scanner
        opened = False
        try:
            async for data in chunks:
                out = scanner.feed(data)
                if not scanner.data_seen:
                    continue
                if scanner.error is not None and not scanner.data_before_error:
                    message = scanner.error.get("message") or "error event"
                    raise UpstreamFailure("stream_error", f"error before any token: {message}")
                opened = True
                return _Opened(response, chunks, out, self._loop.time() - sent)
            raise UpstreamFailure("dropped", "the provider ended the stream before a chunk")
        except (httpx2.HTTPError, OSError) as exc:
            raise UpstreamFailure("dropped", f"stream broken: {type(exc).__name__}") from None
        finally:
            if not opened:
                await response.aclose()

    async def _send_keepalive(self) -> None:
        if not self._headers_sent:
            assert self._first_request_at is not None
            await self._start(200, "", self._first_request_at - self.call.started)
        await self.client.write(KEEPALIVE)
        self._next_keepalive = self._loop.time() + self._keepalive

    async def _start(self, status: int, provider: str, overhead: float) -> None:
        extra = {"x-chorus-overhead-ms": f"{overhead * 1000:.3f}"}
        if provider:
            extra["x-chorus-provider"] = provider
        headers = [
            (b"content-type", self._scanner.content_type),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *response_headers(self.call, extra),
        ]
        self._headers_sent = True
        OVERHEAD.observe(overhead)
        await self.client.start(status, headers)

    # -- phase 2: pass-through --------------------------------------------------------------

    async def _stream(self, attempt: Attempt, opened: _Opened) -> Ending:
        call, client, scanner = self.call, self.client, self._scanner
        provider = attempt.provider
        if not self._headers_sent:
            elapsed = time.perf_counter() - call.started
            await self._start(200, provider, max(0.0, elapsed - self._upstream_wait))
        first_at = time.perf_counter()
        TTFT.labels(call.label, provider).observe(first_at - call.started, exemplar())
        timeouts = attempt.upstream.config.timeouts
        watchdog = Watchdog(self, idle=timeouts.idle, deadline=self._loop.time() + timeouts.total)
        broken: str | None = None
        finished = False
        feed, write, touch = scanner.feed, client.write, watchdog.touch
        try:
            if opened.first is not None:
                await write(opened.first)
            async for data in opened.chunks:
                touch()
                out = feed(data)
                if out is not None:
                    watchdog.writing = True
                    await write(out)
                    watchdog.writing = False
            finished = True
        except asyncio.CancelledError:
            if not self.absorb():
                raise
        except (httpx2.HTTPError, OSError) as exc:
            broken = f"stream broken: {type(exc).__name__}"
        finally:
            watchdog.cancel()
            await self.close_interrupts()
            await opened.response.aclose()
        streaming = time.perf_counter() - first_at
        return await self._end_stream(attempt, finished, broken, streaming)

    async def _end_stream(
        self, attempt: Attempt, finished: bool, broken: str | None, streaming: float
    ) -> Ending:
        provider, scanner = attempt.provider, self._scanner
        if finished and scanner.error is None:
            await self.client.end(b"" if scanner.done else scanner.terminator)
            return self._ending(200, COMPLETED, provider, streaming)
        if finished:  # the provider sent an error event (already told, our way) and stopped
            kind, status = "stream_error", 502
            tail = scanner.terminator
            logger.warning(
                "%s sent an error event mid-stream: %s",
                provider,
                scanner.error,
                extra={"usage_request_id": self.call.request_id, "provider": provider},
            )
        elif broken is not None:
            kind, status = "dropped", 502
            logger.warning(
                "%s: %s",
                provider,
                broken,
                extra={"usage_request_id": self.call.request_id, "provider": provider},
            )
            error = bad_gateway("The provider's stream broke off; the answer is incomplete.")
            tail = scanner.error_event(error) + scanner.terminator
        elif self.reason == CLIENT_DISCONNECTED:
            return self._ending(CLIENT_CLOSED, CUT_OFF, provider, streaming)
        else:
            reason = self.reason or TIMEOUT_IDLE
            limit = attempt.upstream.config.timeouts
            seconds = limit.idle if reason == TIMEOUT_IDLE else limit.total
            what = "sent nothing" if reason == TIMEOUT_IDLE else "did not finish"
            kind, status = reason, 504
            error = gateway_timeout(f"The provider {what} within {seconds:g}s.")
            tail = scanner.error_event(error) + scanner.terminator
        UPSTREAM_ERRORS.labels(provider, kind).inc()
        attempt.breaker.failure()
        await self.client.end(tail)
        return self._ending(status, ERROR, provider, streaming)

    def _ending(self, status: int, outcome: str, provider: str, streaming: float) -> Ending:
        scanner = self._scanner
        usage = scanner.usage
        ending = Ending(status=status, outcome=outcome, provider=provider, engaged=True)
        if usage is not None:
            ending.prompt_tokens, ending.completion_tokens, ending.cached_tokens = usage_counts(
                usage
            )
        else:
            chars, chunks = scanner.delivered()
            ending.prompt_tokens = self.call.request.prompt_estimate
            ending.completion_tokens = estimate_completion_tokens(chars, chunks)
            ending.estimated = True
        if outcome == COMPLETED:
            ending.streaming_seconds = streaming
        return ending

    # -- endings without a stream -----------------------------------------------------------

    async def _refuse(self, error: GatewayError, provider: str) -> Ending:
        # A client reading the whole answer would otherwise "disconnect" into our bookkeeping.
        await self.close_interrupts()
        if self._headers_sent:
            await self.client.end(self._scanner.error_event(error) + self._scanner.terminator)
        else:
            headers = [_JSON, *response_headers(self.call, error.headers)]
            await self.client.start(error.status, headers)
            await self.client.end(self._scanner.error_body(error))
        return Ending(status=error.status, outcome=ERROR, provider=provider)

    def _cut_off_before_start(self, attempt: Attempt | None) -> Ending:
        if attempt is None:
            return Ending(status=CLIENT_CLOSED, outcome=CUT_OFF)
        # The provider had the prompt; nothing was generated for the client.
        return Ending(
            status=CLIENT_CLOSED,
            outcome=CUT_OFF,
            provider=attempt.provider,
            engaged=True,
            prompt_tokens=self.call.request.prompt_estimate,
            estimated=True,
        )
