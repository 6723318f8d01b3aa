"""Helpers for rooms: paced senders, history through the api, what each client saw."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed

from chorus_client import RoomClient

__all__ = [
    "acknowledged",
    "acknowledged_all",
    "answered",
    "assert_exactly_once",
    "chatter",
    "closed",
    "has_messages",
    "history",
    "metric_value",
    "received_all",
    "send_paced",
    "stream_key",
    "under_load",
]

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


async def chatter(
    client: RoomClient,
    prefix: str,
    stop: asyncio.Event,
    *,
    per_second: float = 8.0,
) -> list[str]:
    """Send ``<prefix>-<n>`` steadily until ``stop``; returns every text sent.

    Each message carries a ``ref`` so the server acknowledges it once published. A send
    into a socket that just died is not retried (it was never acknowledged): the checks
    hold the system to every *acknowledged* message.
    """
    sent: list[str] = []
    n = 0
    while not stop.is_set():
        text = f"{prefix}-{n}"
        n += 1
        try:
            async with asyncio.timeout(10):
                await client.say(text, ref=text)
            sent.append(text)
        except (ConnectionClosed, ConnectionError, TimeoutError):
            pass
        await asyncio.sleep(1 / per_second)
    return sent


def acknowledged(client: RoomClient) -> set[str]:
    """Texts the server confirmed it published for this client."""
    return {str(f["ref"]) for f in client.of_type("ack")}


def has_messages(client: RoomClient, count: int) -> Callable[[], bool]:
    """For ``wait_for``: ``client`` has received at least ``count`` chat messages."""
    return lambda: len(client.messages()) >= count


def received_all(client: RoomClient, texts: Iterable[str]) -> Callable[[], bool]:
    """For ``wait_for``: ``client`` has received every one of ``texts``."""
    wanted = set(texts)
    return lambda: wanted <= set(client.messages())


def acknowledged_all(client: RoomClient, texts: Iterable[str]) -> Callable[[], bool]:
    """For ``wait_for``: the server acknowledged every one of ``texts`` to ``client``."""
    wanted = set(texts)
    return lambda: wanted <= acknowledged(client)


def closed(client: RoomClient) -> Callable[[], bool]:
    """For ``wait_for``: a connection of ``client`` has ended."""
    return lambda: bool(client.closes)


def answered(client: RoomClient, message_id: str) -> Callable[[], bool]:
    """For ``wait_for``: the assistant's ``ai.done`` answering ``message_id`` arrived."""
    return lambda: any(
        e["type"] == "ai.done" and e["data"]["reply_to"] == message_id for e in client.events
    )


def assert_exactly_once(clients: list[RoomClient], sent: list[str], acked: set[str]) -> None:
    """Every client saw the same messages in the same (stream) order, none twice, every
    acknowledged one included, and nothing that was not sent."""
    orders = [[e["id"] for e in c.events if e["type"] == "message"] for c in clients]
    texts = [c.messages() for c in clients]
    for order, seen in zip(orders, texts, strict=True):
        assert len(order) == len(set(order)), "a message was delivered twice"
        assert order == sorted(order, key=stream_key), "out of stream order"
        assert acked <= set(seen), f"acknowledged but never delivered: {sorted(acked - set(seen))}"
        assert set(seen) <= set(sent), "delivered but never sent"
    assert all(t == texts[0] for t in texts), "clients disagree on the room's messages"


async def under_load(
    clients: list[RoomClient], fault: Callable[[], Awaitable[None]]
) -> tuple[list[str], set[str]]:
    """Run ``fault`` while every client chats; then settle and return (sent, acked)."""
    stop = asyncio.Event()
    senders = [asyncio.create_task(chatter(c, f"u{i}", stop)) for i, c in enumerate(clients)]
    # The load is flowing everywhere before the fault strikes.
    for client in clients:
        await client.wait_for(has_messages(client, 15), timeout=20)
    await fault()
    # And it keeps flowing after: everyone receives a fresh batch.
    marks = [len(c.messages()) for c in clients]
    for client, mark in zip(clients, marks, strict=True):
        await client.wait_for(has_messages(client, mark + 15), timeout=30)
    stop.set()
    sent = [text for batch in await asyncio.gather(*senders) for text in batch]
    # Settle: a last acknowledged message, seen by all, closes the comparison.
    await clients[0].say("final", ref="final")
    for client in clients:
        await client.wait_for(received_all(client, ["final"]), timeout=20)
    acked = set().union(*(acknowledged(c) for c in clients))
    return [*sent, "final"], acked
