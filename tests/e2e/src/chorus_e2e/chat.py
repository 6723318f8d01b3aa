"""Helpers for rooms: paced senders, history through the api, what each client saw."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from chorus_e2e.realtime_client import RoomClient

__all__ = ["history", "metric_value", "send_paced", "stream_key"]

#: Below realtime's per-connection rate (20/s, burst 40): a steady, legitimate sender.
PACE_PER_SECOND = 12.0


async def send_paced(
    client: RoomClient, texts: list[str], *, per_second: float = PACE_PER_SECOND
) -> None:
    """Send ``texts`` in order at a steady rate (waits for a connection when between two)."""
    for text in texts:
        await client.say(text)
        await asyncio.sleep(1 / per_second)


def stream_key(stream_id: str) -> tuple[int, int]:
    """A Redis stream id as a sortable pair."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


async def history(
    http: httpx.AsyncClient, room: str, token: str, *, limit: int = 100
) -> list[dict[str, Any]]:
    """Every persisted message of ``room``, oldest first, following ``next_cursor``."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await http.get(
            f"/api/rooms/{room}/messages",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return list(reversed(items))


def metric_value(text: str, name: str, labels: str = "") -> float:
    """A sample's value from a Prometheus text exposition (0 when absent)."""
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0
