"""Running a service: one uvicorn process (uvloop, httptools), draining on SIGTERM.

On the first SIGTERM/SIGINT the process flips to not-ready and runs the app's drain hooks
(``app.state.lifecycle``) for up to ``DRAIN_SECONDS``; only then does uvicorn stop
accepting connections and wait ``GRACEFUL_TIMEOUT`` for in-flight requests. A second
signal skips the drain. The process exits 0 after a clean shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from chorus_common.gctuning import settle_garbage_collector
from chorus_common.lifecycle import Lifecycle
from chorus_common.settings import ServiceSettings

__all__ = ["DrainingServer", "run", "uvicorn_config"]

logger = logging.getLogger("chorus.server")

#: Longer than the idle timeout of common proxies (nginx upstream keepalive, AWS ALB 60 s)
#: so the proxy, not us, closes idle keep-alive connections and never races a request.
KEEPALIVE_SECONDS = 75


class DrainingServer(uvicorn.Server):
    """A uvicorn server that drains the app before its graceful shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        lifecycle: Lifecycle,
        drain_seconds: float,
        own_signals: bool = True,
    ) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds
        self.own_signals = own_signals
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until told to exit (remembering the loop the signal handler needs)."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the app and listen; then settle the garbage collector (startup state is kept)."""
        await super().startup(sockets)
        if not self.should_exit:
            settle_garbage_collector()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install SIGTERM/SIGINT handlers, unless another part of the process owns them."""
        if not self.own_signals:
            yield
            return
        with super().capture_signals():
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: drain, then exit. Any later signal: exit now."""
        if self._drain_task is not None or self._loop is None:
            # Not re-raised after serve() (unlike uvicorn's default): we exit 0 on purpose.
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.drain_seconds
        try:
            await self.lifecycle.drain(self.drain_seconds)
            # With no hooks (or quick ones) stay up, not ready, for the rest of the window:
            # load balancers need that long to stop sending new requests here.
            await asyncio.sleep(max(0.0, deadline - loop.time()))
        finally:
            self.should_exit = True


def uvicorn_config(app: FastAPI, settings: ServiceSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration every service uses; ``options`` override (e.g. ``ws=``)."""
    base: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.trusted_proxies,
        "timeout_graceful_shutdown": settings.graceful_timeout,
        "timeout_keep_alive": KEEPALIVE_SECONDS,
        "server_header": False,
    }
    base.update(options)
    if base["forwarded_allow_ips"] == "*" and not settings.is_dev:
        logger.warning(
            "FORWARDED_ALLOW_IPS=* outside ENV=dev: any client can choose its address with "
            "X-Forwarded-For (and a fresh per-address limit with it); set the proxies' range"
        )
    return uvicorn.Config(app, **base)


def run(app: FastAPI, settings: ServiceSettings, **options: Any) -> None:
    """Serve ``app`` until SIGTERM/SIGINT, draining first; blocks."""
    server = DrainingServer(
        uvicorn_config(app, settings, **options),
        lifecycle=app.state.lifecycle,
        drain_seconds=settings.drain_seconds,
    )
    logger.info("listening on http://%s:%d", settings.host, settings.port)
    server.run()
