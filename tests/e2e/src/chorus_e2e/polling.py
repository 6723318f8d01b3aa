"""Waiting for a condition with a deadline: the suite's only way to synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = bool,
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call ``probe`` until ``until(result)`` holds; return that result.

    Raises ``TimeoutError`` naming ``what`` and the last result after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            msg = f"{what} not reached within {timeout}s; last: {result!r}"
            raise TimeoutError(msg)
        await asyncio.sleep(interval)
