"""Peer publisher: emits through AsyncRedisManager (write-only), as a backend service would.

stdin commands: ``burst <n>`` (as fast as possible) and ``rate <per second> <seconds>``;
answers ``{"sent": n, "seconds": s}`` per command.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import socketio


async def main() -> None:
    manager = socketio.AsyncRedisManager(
        os.environ["REDIS_URL"], channel="bench-socketio", write_only=True
    )
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    n = 0
    while True:
        line = (await reader.readline()).decode().split()
        if not line or line[0] == "quit":
            return
        start = time.time()
        if line[0] == "burst":
            for _ in range(int(line[1])):
                await manager.emit("message", {"message": "x" * 64, "n": n, "t": time.time()})
                n += 1
            count = int(line[1])
        else:
            rate, seconds = float(line[1]), float(line[2])
            count = int(rate * seconds)
            for i in range(count):
                due = start + i / rate
                delay = due - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await manager.emit("message", {"message": "x" * 64, "n": n, "t": time.time()})
                n += 1
        print(json.dumps({"sent": count, "seconds": time.time() - start}), flush=True)


asyncio.run(main())
