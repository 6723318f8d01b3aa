"""Peer: python-socketio with AsyncRedisManager (one process of several), under uvicorn."""

from __future__ import annotations

import os
import sys

import socketio
import uvicorn

manager = socketio.AsyncRedisManager(os.environ["REDIS_URL"], channel="bench-socketio")
sio = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins="*")
app = socketio.ASGIApp(sio)

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
