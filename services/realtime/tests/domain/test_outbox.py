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
    assert [f.text for f in outbox.take_all()] == ["abc", "defg"]
    assert outbox.put(OutFrame("defg"))
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
    assert [f.text for f in outbox.take_all()] == ["last"]
    assert await outbox.wait() is False


def test_on_ready_fires_when_frames_arrive_in_an_empty_outbox_and_on_close() -> None:
    calls: list[int] = []
    outbox = Outbox(max_frames=500, max_bytes=10_000, on_ready=lambda: calls.append(len(outbox)))
    outbox.put(OutFrame("a"))
    outbox.put(OutFrame("b"))  # not empty any more: no second wake-up
    assert calls == [1]
    assert len(outbox.take_all()) == 2
    assert outbox.take_all() == []
    outbox.put(OutFrame("c"))
    assert calls == [1, 1]
    outbox.close()
    assert calls == [1, 1, 1]


def test_a_queue_that_never_empties_keeps_its_order() -> None:
    outbox = Outbox(max_frames=1000, max_bytes=1_000_000)
    taken: list[str] = []
    for n in range(1000):  # the reader takes what is there every few frames
        assert outbox.put(OutFrame(str(n)))
        if n % 3 == 2:
            taken.extend(frame.text for frame in outbox.take_all())
    taken.extend(frame.text for frame in outbox.take_all())
    assert taken == [str(n) for n in range(1000)]
    assert len(outbox) == 0
