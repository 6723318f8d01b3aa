"""``answer_in_room(room, message_id, prompt, user_id)``: the assistant's streamed answer.

Realtime enqueues it (job ``assistant:<room>:<message_id>``) for a message starting with
``@assistant``. The job asks the LLM gateway (the ``openai`` SDK on ``<LLM_GATEWAY_URL>/v1``,
service API key, model ``ASSISTANT_MODEL``, streamed with ``include_usage``) and publishes
into ``room:<room>``, from ``assistant``:

- ``ai.delta`` ``{"reply_to": message_id, "delta", "index"}`` as tokens arrive (coalesced,
  see ``deltas.py``);
- then exactly one ``ai.done`` ``{"reply_to", "message": <full text>, "usage"}`` — also when
  the gateway fails (before or during the stream, or stays silent past
  ``ASSISTANT_IDLE_TIMEOUT`` / ``ASSISTANT_TIMEOUT``): the ``ai.done`` then carries the text
  so far and ``"error": {"code", "message"}``, so the room is never left waiting.

Gateway errors are answered, not retried: the gateway already retries and falls back
before the first token, and people are watching. What the room sees of an error is a code
and a sentence of ours; what the gateway or a provider said (status, message, the
connection error) goes to the log only — a room is read by everyone in it.

Each asking user is limited twice: the gateway applies per-user sub-limits under the
worker's key (the request names the asker in OpenAI's ``user`` field), and realtime lets a
user have only a few answers pending at once (``chorus:assistant:pending:<user>``, a sorted
set of job ids by expiry); a finished answer removes its job from there.

**Idempotency**: after ``ai.done`` the
job sets ``chorus:assistant:done:<room>:<message_id>`` (7 days); a redelivery that finds
it does nothing. A job interrupted mid-answer (worker killed or shut down) starts over on
redelivery — its deltas restart at ``index`` 0. The one window left is between publishing
``ai.done`` and setting the marker (one Redis round trip): a crash exactly there repeats
the answer.

With tracing on, the call is a GenAI client span ``chat <ASSISTANT_MODEL>`` whose context
goes to the gateway in the ``traceparent`` header, with the time to the first chunk and
the usage; each ``ai.delta`` and the ``ai.done`` is a ``publish`` span of the job.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any, Final

import openai
from opentelemetry import trace
from opentelemetry.trace import Span

from chorus_common.events import (
    InvalidChannelError,
    InvalidStreamIdError,
    parse_stream_id,
    room_channel,
)
from chorus_common.genai_tracing import finished, first_chunk, start_chat_span
from chorus_common.trace_context import trace_headers
from chorus_common.tracing import child_tracer
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.deltas import ASSISTANT_SENDER, DeltaPublisher
from chorus_worker.domain.errors import PermanentJobError
from chorus_worker.metrics import ASSISTANT_REPLIES

__all__ = ["JOB_ID_PREFIX", "answer_in_room", "done_key", "pending_key"]

logger = logging.getLogger("chorus.worker.assistant")

#: Realtime enqueues every answer as ``assistant:<room>:<message id>``.
JOB_ID_PREFIX: Final = "assistant:"
_MENTION: Final = re.compile(r"^\s*@assistant\b[\s,:]*", re.IGNORECASE)
_DONE_TTL_SECONDS: Final = 7 * 86_400
_MAX_ERROR_CHARS: Final = 300


def done_key(room: str, message_id: str) -> str:
    """Set once a message has its ``ai.done``."""
    return f"chorus:assistant:done:{room}:{message_id}"


def pending_key(user_id: str) -> str:
    """The answers a user waits for (realtime adds, the finished job removes)."""
    return f"chorus:assistant:pending:{user_id}"


def _question(prompt: str, limit: int) -> str:
    return _MENTION.sub("", prompt, count=1).strip()[:limit]


def _error(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message[:_MAX_ERROR_CHARS]}


def _gateway_error(exc: openai.APIError) -> dict[str, str]:
    """What the room is told: a code and our own words, never the gateway's or a provider's."""
    if isinstance(exc, openai.APITimeoutError):
        return _error("gateway_timeout", "The assistant stopped answering.")
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code == 429:
            return _error(
                "rate_limited", "The assistant is busy or you asked a lot; try again in a moment."
            )
        return _error("gateway_error", "The assistant could not answer this time.")
    if isinstance(exc, openai.APIConnectionError):
        return _error("gateway_unreachable", "The assistant cannot be reached right now.")
    return _error("gateway_error", "The assistant could not answer this time.")


async def answer_in_room(
    ctx: JobContext, room: str, message_id: str, prompt: str, user_id: str
) -> dict[str, Any]:
    """Stream the assistant's answer to ``prompt`` into ``room``, replying to ``message_id``."""
    try:
        channel = room_channel(room)
        parse_stream_id(message_id)
    except (InvalidChannelError, InvalidStreamIdError, TypeError) as exc:
        raise PermanentJobError(str(exc)) from exc
    found = resources(ctx)
    settings = found.settings
    marker = done_key(room, message_id)
    answered = await found.redis.get(marker)
    if answered is not None:
        return {"status": "already_answered", "event_id": answered.decode()}

    question = _question(str(prompt), settings.assistant_max_prompt_chars)
    publisher = DeltaPublisher(
        found.bus, channel, reply_to=message_id, interval=settings.assistant_delta_interval
    )
    usage: dict[str, int] | None = None
    error: dict[str, str] | None = None
    publisher.start()
    try:
        if not question:
            error = _error("empty_prompt", "Ask me something after @assistant.")
        else:
            try:
                async with asyncio.timeout(settings.assistant_timeout):
                    usage = await _stream(ctx, question, str(user_id), publisher)
            except TimeoutError:
                error = _error(
                    "timeout", f"No complete answer within {settings.assistant_timeout:g}s."
                )
            except openai.APIError as exc:
                status = getattr(exc, "status_code", None)
                cause = exc.__cause__
                logger.warning(
                    "assistant call failed: %s%s: %s%s",
                    type(exc).__name__,
                    f" {status}" if status is not None else "",
                    exc.message,
                    f" ({type(cause).__name__}: {cause})" if cause is not None else "",
                    extra={"room": room, "message_id": message_id},
                )
                error = _gateway_error(exc)
        await publisher.close()
    finally:
        await publisher.cancel()

    data: dict[str, Any] = {"reply_to": message_id, "message": publisher.text, "usage": usage}
    if error is not None:
        data["error"] = error
    done = await found.bus.publish(channel, "ai.done", data, sender=ASSISTANT_SENDER)
    async with found.redis.pipeline(transaction=False) as pipe:
        pipe.set(marker, done.id, ex=_DONE_TTL_SECONDS)
        pipe.zrem(pending_key(str(user_id)), ctx["job_id"])
        await pipe.execute()
    ASSISTANT_REPLIES.labels("error" if error else "completed").inc()
    result: dict[str, Any] = {
        "status": "failed" if error else "answered",
        "event_id": done.id,
        "deltas": publisher.events,
    }
    if error is not None:
        result["error"] = error
    return result


async def _stream(
    ctx: JobContext, question: str, user_id: str, publisher: DeltaPublisher
) -> dict[str, int] | None:
    """Ask the gateway and feed the publisher; returns the usage the stream reported."""
    tracing = child_tracer()
    if tracing is None:
        return await _ask(ctx, question, user_id, publisher, None)
    settings = resources(ctx).settings
    span = start_chat_span(
        tracing,
        model=settings.assistant_model,
        provider="chorus",
        url=settings.llm_gateway_url,
        max_tokens=settings.assistant_max_tokens,
    )
    with trace.use_span(span, end_on_exit=True):
        return await _ask(ctx, question, user_id, publisher, span)


async def _ask(
    ctx: JobContext, question: str, user_id: str, publisher: DeltaPublisher, span: Span | None
) -> dict[str, int] | None:
    settings = resources(ctx).settings
    usage: dict[str, int] | None = None
    sent = time.perf_counter()
    first = True
    finish_reasons: list[str] = []
    model: str | None = None
    stream = await resources(ctx).llm.chat.completions.create(
        model=settings.assistant_model,
        messages=[
            {"role": "system", "content": settings.assistant_system_prompt},
            {"role": "user", "content": question},
        ],
        max_tokens=settings.assistant_max_tokens,
        stream=True,
        stream_options={"include_usage": True},
        user=user_id,
        extra_headers=trace_headers(),
    )
    async with stream:
        async for chunk in stream:
            if span is not None:
                if first:
                    first = False
                    first_chunk(span, time.perf_counter() - sent)
                model = chunk.model or model
                finish_reasons += [c.finish_reason for c in chunk.choices if c.finish_reason]
            if chunk.usage is not None:
                usage = {
                    "prompt_tokens": chunk.usage.prompt_tokens,
                    "completion_tokens": chunk.usage.completion_tokens,
                    "total_tokens": chunk.usage.total_tokens,
                }
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    publisher.add(choice.delta.content)
    if span is not None:
        finished(
            span,
            input_tokens=usage["prompt_tokens"] if usage else None,
            output_tokens=usage["completion_tokens"] if usage else None,
            response_model=model,
            finish_reasons=finish_reasons,
        )
    return usage
