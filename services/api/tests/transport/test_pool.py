"""The pool gate admits in arrival order and times out like the pool would."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from chorus_api.routes.unavailable import is_database_unavailable
from chorus_api.transport.pool import PoolGate


async def test_waiters_are_admitted_first_come_first_served() -> None:
    gate = PoolGate(slots=1, timeout=5)
    admitted: list[int] = []
    release = asyncio.Event()

    async def request(n: int) -> None:
        async with gate.slot():
            admitted.append(n)
            await release.wait()

    first = asyncio.create_task(request(0))
    while not admitted:
        await asyncio.sleep(0)
    waiters = []
    for n in range(1, 4):
        waiters.append(asyncio.create_task(request(n)))
        await asyncio.sleep(0)  # let it queue before the next one arrives
    release.set()
    await asyncio.gather(first, *waiters)
    assert admitted == [0, 1, 2, 3]


async def test_a_full_gate_times_out_as_an_unavailable_database() -> None:
    gate = PoolGate(slots=1, timeout=0.05)
    async with gate.slot():
        with pytest.raises(PoolTimeoutError) as caught:
            async with gate.slot():
                pass
    assert is_database_unavailable(caught.value)
    async with gate.slot():  # the slot came back
        pass
