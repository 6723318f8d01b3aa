"""The bounded send queue."""

from __future__ import annotations

import asyncio

from chorus_realtime.domain.frames import OutFrame
from chorus_realtime.domain.outbox import Outbox


async def test_bounded_by_count_and_size_and_wakes_the_writer() -> None:
    outbox = Outbox(max_frames=2, max_bytes=10)
    waiting = asyncio.create_task(outbox.wait())
    await asyncio.sleep(0)
    assert outbox.put(OutFrame("abc"))
    assert await waiting is True
    assert outbox.put(OutFrame("defg"))
    assert not outbox.put(OutFrame("h"))  # count
    assert outbox.pop().text == "abc"
    assert not outbox.put(OutFrame("x" * 7))  # size: 4 + 7 > 10
    assert outbox.put(OutFrame("x" * 6))
    outbox.put_unbounded(OutFrame("reply"))  # replies are never refused
    assert len(outbox) == 3


async def test_close_lets_the_writer_finish_what_is_queued() -> None:
    outbox = Outbox(max_frames=5, max_bytes=100)
    outbox.put(OutFrame("last"))
    outbox.close()
    assert outbox.put(OutFrame("ignored"))
    assert await outbox.wait() is True
    assert outbox.pop().text == "last"
    assert await outbox.wait() is False
