"""How long to wait before reconnecting: full-jitter exponential backoff.

After the n-th failed attempt in a row a client waits ``random(0, min(cap, base * 2**n))``
seconds. The jitter spreads the reconnects of many clients that lost the same server at
the same moment (a deploy, a crash), so they do not come back as one thundering herd;
the cap bounds how long a client stays away once the server is back. A successful
connection starts over from ``base``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass
class Backoff:
    """Full-jitter exponential backoff: ``random(0, min(cap, base * 2**attempt))`` seconds."""

    base: float = 0.05
    cap: float = 2.0
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base:
            msg = "backoff needs 0 < base <= cap"
            raise ValueError(msg)

    def next_delay(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))  # noqa: S311
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """A connection succeeded: start again from the base delay."""
        self.attempt = 0
