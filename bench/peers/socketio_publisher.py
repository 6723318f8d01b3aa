"""Peer publisher: emits through AsyncRedisManager (write-only), as a backend service would.

The command loop is ``publisher_protocol`` (``burst <n>``, ``rate <per second> <seconds>``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import socketio
from publisher_protocol import arguments, serve


async def main() -> None:
    args = arguments(__doc__.split("\n")[0])
    manager = socketio.AsyncRedisManager(
        os.environ["REDIS_URL"], channel="bench-socketio", write_only=True
    )

    async def send(room: str | None, data: dict[str, Any]) -> None:
        await manager.emit("message", data, room=room)

    await serve(send, args)


asyncio.run(main())
