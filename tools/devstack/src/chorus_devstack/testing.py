"""Helpers for tests that run an ASGI app in-process behind a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

from chorus_devstack.ports import free_port

__all__ = ["EmbeddedServer", "serve_app"]


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the test process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Do not install handlers: pytest owns SIGINT."""
        yield


@contextlib.asynccontextmanager
async def serve_app(app: Any, **options: Any) -> AsyncIterator[EmbeddedServer]:
    """Serve ``app`` on a free loopback port for the duration of the block.

    Real HTTP (and WebSocket) over a socket, so streaming, disconnects and headers behave
    as in production; ``server.config.port`` tells where. The app's lifespan runs.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=options.pop("port", None) or free_port(),
        log_config=None,
        lifespan="on",
        access_log=False,
        **options,
    )
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            msg = "uvicorn exited before it started"
            raise RuntimeError(msg)
        await asyncio.sleep(0.005)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def base_url(server: uvicorn.Server) -> str:
    """``http://127.0.0.1:<port>`` of an embedded server."""
    return f"http://{server.config.host}:{server.config.port}"
