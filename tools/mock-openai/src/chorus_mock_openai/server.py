"""Running the app under uvicorn with the settings a benchmark baseline needs."""

from __future__ import annotations

import socket

import uvicorn

from chorus_mock_openai.app import MockOpenAI

__all__ = ["bind_socket", "build_server"]

_BACKLOG = 2048


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free port (read it from `getsockname()`).

    Binding before uvicorn starts lets the caller learn the port and lets
    clients connect at once: the kernel queues them until uvicorn accepts.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=_BACKLOG)
    sock.set_inheritable(True)
    return sock


def build_server(
    app: MockOpenAI,
    *,
    keep_alive_s: float = 75.0,
    graceful_shutdown_s: float = 5.0,
) -> uvicorn.Server:
    """A uvicorn server on uvloop + httptools, without access logs or log config.

    The keep-alive timeout is longer than httpx's 5 s pool expiry so the server
    never closes an idle connection just as a client reuses it, a race that
    would show up as spurious errors in benchmarks.
    """
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        server_header=False,
        log_config=None,
        timeout_keep_alive=int(keep_alive_s),
        timeout_graceful_shutdown=int(graceful_shutdown_s),
        backlog=_BACKLOG,
    )
    return uvicorn.Server(config)
