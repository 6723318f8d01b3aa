"""The publishers' command loop: what ``socketio_publisher.py`` and ``chorus_publisher.py`` share.

stdin commands, each answered with one JSON line ``{"sent": n, "seconds": s}``:

- ``burst <n>``: ``n`` messages as fast as the path takes them (``--concurrency`` in flight);
- ``rate <per second> <seconds>``: on a fixed schedule (late ones go at once, in order);
- ``quit``.

With ``--rooms N``, message i goes to room ``<prefix><i mod N>`` and carries ``n``, its
number within that room (1, 2, 3... per room), so a client can tell a gap or a duplicate
(keep ``--concurrency`` below N: two publishes to one room are then never in flight
together, and a room's messages reach Redis in their order); without, every message goes
to everyone and ``n`` counts them all. Every message carries ``t``, its publish time, for
latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

#: ``send(room or None, data)``: publish one message through the system's own path.
Send = Callable[[str | None, dict[str, Any]], Coroutine[Any, Any, None]]


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rooms", type=int, default=0, help="spread over this many rooms")
    parser.add_argument("--prefix", default="room-", help="room names: <prefix><i>")
    parser.add_argument("--concurrency", type=int, default=1, help="publishes in flight")
    return parser.parse_args()


async def serve(send: Send, args: argparse.Namespace) -> None:
    """Read commands from stdin until ``quit`` (or EOF)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    counters = [0] * max(1, args.rooms)
    total = 0
    in_flight = max(1, args.concurrency)
    pending: set[asyncio.Task[None]] = set()

    async def launch() -> None:
        """Start the next publish once fewer than ``--concurrency`` are in flight."""
        nonlocal total
        while len(pending) >= in_flight:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        index = total % len(counters)
        total += 1
        counters[index] += 1
        room = f"{args.prefix}{index}" if args.rooms else None
        data = {"message": "x" * 64, "n": counters[index], "t": time.time()}
        task = asyncio.create_task(send(room, data))
        pending.add(task)
        task.add_done_callback(pending.discard)

    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            return
        start = time.time()
        if line[0] == "burst":
            count = int(line[1])
            for _ in range(count):
                await launch()
        else:
            rate, seconds = float(line[1]), float(line[2])
            count = int(rate * seconds)
            for i in range(count):
                delay = start + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await launch()
        if pending:
            await asyncio.gather(*pending)
        print(json.dumps({"sent": count, "seconds": time.time() - start}), flush=True)
