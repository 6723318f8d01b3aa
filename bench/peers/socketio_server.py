"""Peer: python-socketio with AsyncRedisManager (one process of several), under uvicorn.

Clients join and leave rooms with ``join`` / ``leave`` events (acknowledged), as a
python-socketio chat app does; what the publisher emits to a room reaches its members on
every process through Redis.
"""

from __future__ import annotations

import os
import sys

import socketio
import uvicorn

manager = socketio.AsyncRedisManager(os.environ["REDIS_URL"], channel="bench-socketio")
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins="*")
app = socketio.ASGIApp(sio)


@sio.on("join")  # type: ignore[untyped-decorator]
async def join(sid: str, room: str) -> str:
    await sio.enter_room(sid, room)
    return "ok"


@sio.on("leave")  # type: ignore[untyped-decorator]
async def leave(sid: str, room: str) -> str:
    await sio.leave_room(sid, room)
    return "ok"


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio" if len(sys.argv) < 3 else sys.argv[2],
    )
