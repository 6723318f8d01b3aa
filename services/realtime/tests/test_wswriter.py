"""The flusher: once per loop iteration when quiet, at most every ``interval`` when busy."""

from __future__ import annotations

import asyncio
from typing import cast

from chorus_realtime.wswriter import Flusher, SocketWriter


class Writer:
    """Stands in for a socket's writer: records when it was flushed."""

    def __init__(self) -> None:
        self.flushed_at: list[float] = []
        self.flushed = asyncio.Event()

    def flush(self) -> None:
        self.flushed_at.append(asyncio.get_running_loop().time())
        self.flushed.set()

    async def next_flush(self) -> float:
        await self.flushed.wait()
        self.flushed.clear()
        return self.flushed_at[-1]


def add(flusher: Flusher, writer: Writer) -> None:
    flusher.add(cast(SocketWriter, writer))


async def test_writers_added_in_one_iteration_are_flushed_together_at_its_end() -> None:
    flusher = Flusher()
    first, second = Writer(), Writer()
    add(flusher, first)
    add(flusher, second)
    assert first.flushed_at == []  # not before the callbacks of this iteration ran
    await first.next_flush()
    assert len(second.flushed_at) == 1  # in the same flush: before the waiter resumed


async def test_without_interval_every_iteration_flushes() -> None:
    flusher, writer = Flusher(), Writer()
    loop = asyncio.get_running_loop()
    add(flusher, writer)
    first = await writer.next_flush()
    added = loop.time()
    add(flusher, writer)
    second = await writer.next_flush()
    assert first <= added <= second < added + 0.05


async def test_a_busy_flusher_waits_out_its_interval_a_quiet_one_does_not() -> None:
    interval = 0.05
    flusher, writer = Flusher(interval), Writer()
    loop = asyncio.get_running_loop()
    added = loop.time()
    add(flusher, writer)
    first = await writer.next_flush()
    assert first - added < interval  # quiet: at once
    add(flusher, writer)
    add(flusher, Writer())
    second = await writer.next_flush()
    assert second >= first + interval - 0.001  # busy: one flush per interval (timer ~1 ms)
