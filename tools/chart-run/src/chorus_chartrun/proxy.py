"""TCP proxies: Services (kube-proxy's userspace mode) and port-forwards from the machine.

A :class:`ServiceProxy` listens on a Service's ClusterIP and port in the node and hands
each connection to the next ready endpoint, round-robin. While a Service has no ready
endpoint its port is closed, so a client is refused at once, as kube-proxy's rules refuse
it. A :class:`PortForward` accepts on a socket the runner bound on the machine's loopback
before it left the machine's network namespace (as ``kubectl port-forward`` listens
locally) and connects, from the node, to wherever its target is now.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable

__all__ = ["PortForward", "ServiceProxy", "splice"]

logger = logging.getLogger("chorus.chartrun.proxy")

#: Where a connection goes: (address, port), or None when nowhere can take it.
Target = tuple[str, int]

_CHUNK = 64 * 1024


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def splice(client: tuple[asyncio.StreamReader, asyncio.StreamWriter], target: Target) -> None:
    """Connect to ``target`` and copy bytes both ways until both sides are done."""
    reader, writer = client
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        writer.transport.abort()  # a reset: the client sees what a dead endpoint gives
        return
    try:
        await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
    finally:
        for side in (writer, upstream_writer):
            side.close()
            with contextlib.suppress(ConnectionError, OSError):
                await side.wait_closed()


class ServiceProxy:
    """One Service port on its ClusterIP."""

    def __init__(
        self, name: str, ip: str, port: int, endpoints: Callable[[], list[Target]]
    ) -> None:
        self.name = name
        self.ip = ip
        self.port = port
        self.endpoints = endpoints
        self._server: asyncio.Server | None = None
        self._turn = itertools.count()
        self._connections: set[asyncio.Task[None]] = set()

    async def sync(self) -> None:
        """Open the port while there are ready endpoints, close it while there are none."""
        ready = bool(self.endpoints())
        if ready and self._server is None:
            self._server = await asyncio.start_server(
                self._accept, self.ip, self.port, reuse_address=True, backlog=512
            )
        elif not ready and self._server is not None:
            self._server.close()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        endpoints = self.endpoints()
        if not endpoints:
            writer.transport.abort()
            return
        target = endpoints[next(self._turn) % len(endpoints)]
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await splice((reader, writer), target)
        finally:
            self._connections.discard(task)

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()


class PortForward:
    """Connections accepted on a machine-side socket, forwarded to a target in the node."""

    def __init__(self, name: str, sock: socket.socket) -> None:
        self.name = name
        self.sock = sock
        self.target: Callable[[], Target | None] = lambda: None
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The machine-side port (on 127.0.0.1)."""
        return int(self.sock.getsockname()[1])

    @property
    def url_host(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    @classmethod
    def bind(cls, name: str) -> PortForward:
        """Listen on a free loopback port of the machine (call before leaving its namespace)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
        return cls(name, sock)

    async def start(self, target: Callable[[], Target | None]) -> None:
        """Begin forwarding to ``target()`` (asked anew for each connection)."""
        self.target = target
        self._server = await asyncio.start_server(self._accept, sock=self.sock)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        target = self.target()
        if target is None:
            writer.transport.abort()
            return
        await splice((reader, writer), target)

    async def close(self) -> None:
        """Stop forwarding."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.sock.close()
