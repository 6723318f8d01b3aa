"""Faults in the realtime tier, under steady chat load through the ingress.

A replica SIGKILLed, then both replaced one after the other (SIGTERM → drain): every
client resumes on the remaining replica and ends with every acknowledged message exactly
once, in the room's order. Each test restores what it stopped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from chorus_client import Backoff, RoomClient
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import Account, sign_up
from chorus_e2e.chat import assert_exactly_once, under_load


@pytest.fixture
async def room_users(http: httpx.AsyncClient) -> list[Account]:
    """Three members for a busy room."""
    return [await sign_up(http, name) for name in ("ann", "ben", "cat")]


@pytest.fixture
async def busy_room(ingress: str, room_users: list[Account]) -> AsyncIterator[list[RoomClient]]:
    """Three connected clients in a fresh room (the ingress spreads them over replicas)."""
    room = f"busy-{os.urandom(4).hex()}"
    clients = [
        RoomClient([ingress], room, u.token, backoff=Backoff(base=0.05, cap=0.5))
        for u in room_users
    ]
    try:
        for client in clients:
            await client.start()
            await client.wait_subscribed()
        yield clients
    finally:
        for client in clients:
            await client.stop()


async def test_sigkill_of_a_replica_loses_and_repeats_nothing(
    stack: Stack, busy_room: list[RoomClient]
) -> None:
    async def kill_one() -> None:
        stack.processes["realtime-1"].kill()

    try:
        sent, acked = await under_load(busy_room, kill_one)
    finally:
        stack.start_again("realtime-1")

    assert_exactly_once(busy_room, sent, acked)
    moved = [c for c in busy_room if c.connects > 1]
    assert moved, "no client was on the killed replica"
    for client in moved:
        resumed = client.of_type("subscribed")[1:]
        assert all(f["recovering"] and f["recovered"] for f in resumed), resumed


async def test_rolling_restart_under_load_leaves_no_gap(
    stack: Stack, busy_room: list[RoomClient]
) -> None:
    async def roll() -> None:
        for name in stack.replicas("realtime"):
            await asyncio.to_thread(stack.restart, name)  # SIGTERM, drain, start, ready

    sent, acked = await under_load(busy_room, roll)

    assert_exactly_once(busy_room, sent, acked)
    for client in busy_room:
        # Every client was moved at least once, told so by its replica, and resumed.
        assert client.connects >= 2
        assert any(c.code == 1012 for c in client.closes), client.closes
        resumed = client.of_type("subscribed")[1:]
        assert all(f["recovering"] and f["recovered"] for f in resumed), resumed
