"""A job that does nothing: the smoke test of the queue and the benchmarks' unit of work."""

from __future__ import annotations

from typing import Any

__all__ = ["noop"]


async def noop(ctx: dict[str, Any]) -> None:
    """Do nothing; measures queue overhead alone."""
