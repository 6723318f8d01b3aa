"""The request log: one record per completion request, kept for the last N requests.

Timestamps come in pairs: `*_at` is wall-clock `time.time()`, comparable with
any process's clock; `*_monotonic` is `time.monotonic()`, which on Linux is
CLOCK_MONOTONIC and so comparable across processes on the same host without
wall-clock jumps.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Outcome", "Recorder", "RequestRecord", "new_request_id"]


class Outcome(StrEnum):
    """How a request ended."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    FAULT = "fault"
    REJECTED = "rejected"
    """Answered with a 4xx (validation, auth, unknown model) before any generation."""


def new_request_id() -> str:
    """A fresh `req_…` id, as OpenAI returns in `x-request-id`."""
    return "req_" + os.urandom(16).hex()


@dataclass(slots=True)
class RequestRecord:
    """What happened to one completion request."""

    request_id: str
    started_at: float
    started_monotonic: float
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    fault: str | None = None
    tag: str | None = None
    client_request_id: str | None = None
    """The `x-client-request-id` header the client sent, if any."""
    traceparent: str | None = None
    """The W3C `traceparent` header the client sent, if any (its trace context)."""
    ttft_ms: float | None = None
    inter_token_ms: float | None = None
    status: int | None = None
    prompt_tokens: int = 0
    tokens_planned: int = 0
    tokens_sent: int = 0
    finish_reason: str | None = None
    usage_sent: bool = False
    outcome: Outcome = Outcome.IN_PROGRESS
    error: str | None = None
    headers_at: float | None = None
    headers_monotonic: float | None = None
    first_token_at: float | None = None
    first_token_monotonic: float | None = None
    ended_at: float | None = None
    ended_monotonic: float | None = None
    disconnected_at: float | None = None
    """When the mock detected the client going away (wall clock)."""
    disconnected_monotonic: float | None = None

    def mark_headers(self, status: int) -> None:
        """Note that the response status line and headers went out."""
        self.status = status
        self.headers_at = time.time()
        self.headers_monotonic = time.monotonic()

    def mark_first_token(self) -> None:
        """Note that the first content token went out."""
        self.first_token_at = time.time()
        self.first_token_monotonic = time.monotonic()

    def end(self, outcome: Outcome, error: str | None = None) -> None:
        """Close the record with its outcome."""
        self.outcome = outcome
        self.error = error
        self.ended_at = time.time()
        self.ended_monotonic = time.monotonic()

    def client_disconnected(self, at: float, at_monotonic: float) -> None:
        """Close the record because the client went away at the given detection times."""
        self.disconnected_at = at
        self.disconnected_monotonic = at_monotonic
        self.end(Outcome.CLIENT_DISCONNECTED)


class Recorder:
    """A bounded, in-order log of request records."""

    def __init__(self, limit: int) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=limit)
        self._waiters: list[asyncio.Future[None]] = []

    def start(self, request_id: str) -> RequestRecord:
        """Open and log a record for a request that just arrived."""
        record = RequestRecord(
            request_id=request_id, started_at=time.time(), started_monotonic=time.monotonic()
        )
        self._records.append(record)
        return record

    def query(
        self,
        *,
        limit: int | None = None,
        tag: str | None = None,
        model: str | None = None,
        request_id: str | None = None,
    ) -> list[RequestRecord]:
        """Records oldest first, filtered, then cut to the most recent `limit`."""
        records = [
            record
            for record in self._records
            if (tag is None or record.tag == tag)
            and (model is None or record.model == model)
            and (request_id is None or record.request_id == request_id)
        ]
        if limit is not None:
            records = records[-limit:] if limit else []
        return records

    def settled(self) -> None:
        """Wake `wait_until` callers: a request has just reached its outcome."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_until(self, ready: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `ready()` holds, re-checking as requests settle; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not ready():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                return ready()
        return True

    def clear(self) -> None:
        """Forget every record."""
        self._records.clear()

    def __len__(self) -> int:
        return len(self._records)
