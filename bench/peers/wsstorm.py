"""Chorus room clients that reconnect the way ``chorus_client`` does, thousands per process.

``chorus_client.RoomClient`` is a full client (one ``websockets`` connection and task each,
every frame kept); ten thousand of them in one process would measure themselves. This is
the same behaviour, lean: one bare asyncio protocol per connection and, per client, what
the real client keeps between connections — its base URLs (it moves to the next one on
each reconnect), the id of the last event it received (sent as ``?since=`` when it
reconnects) and its backoff, ``chorus_client.Backoff`` itself (full jitter, 0.05 s doubling
up to 2 s), reset once a connection is up.

Every message received is checked against its number in the room (``data.n``, 1, 2, 3...):
across reconnects a client must get each one exactly once. ``"source"`` in a target binds
the client's sockets to that local address (127.0.0.x), for more than one ephemeral port
range's worth of connections.

Reads a JSON job from argv[1] (``targets``: ``urls`` [[host, port], ...], ``room``,
``headers``, optional ``source``; ``concurrency``: connects in flight at first). Prints
``{"ready": n}`` once every client is up; then, on stdin:

- ``mark``: from now on, count each client's next ``subscribed`` frame as its resume;
- ``report``: connected clients, resumes since the mark (with the seconds each took),
  messages missing or repeated, resumes that were not ``recovered``, closes by code;
- ``quit``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections import Counter
from typing import Any

from wsload import _request, loads, messages, read_job, take_status

from chorus_client import Backoff


class Stats:
    def __init__(self) -> None:
        self.mark = 0.0
        self.resumes: list[float] = []
        self.not_recovered = 0
        self.missing = 0
        self.duplicates = 0
        self.messages = 0
        self.closes: Counter[str] = Counter()
        self.connected = 0


STATS = Stats()


class StormClient:
    """One logical client: what survives its connections."""

    def __init__(self, target: dict[str, Any]) -> None:
        self.urls = [(str(host), int(port)) for host, port in target["urls"]]
        self.room = target["room"]
        self.headers = target.get("headers", [])
        self.source = target.get("source")
        self.url = 0
        self.backoff = Backoff()
        self.last_id: str | None = None
        self.last_n = 0
        self.resumed_after = -1.0  # the mark this client last resumed after
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stopping = False

    async def connect(self) -> None:
        host, port = self.urls[self.url % len(self.urls)]
        path = f"/ws/{self.room}" + (f"?since={self.last_id}" if self.last_id else "")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            if self.source:
                sock.bind((self.source, 0))
            await loop.sock_connect(sock, (host, port))
            await loop.create_connection(
                lambda: Connection(self, _request(host, port, path, self.headers)), sock=sock
            )
        except OSError as exc:
            sock.close()
            self.lost(f"connect: {type(exc).__name__}")

    def lost(self, how: str) -> None:
        """The connection ended (or never started): back off, then try the next URL."""
        STATS.closes[how] += 1
        if self.stopping:
            return
        self.url += 1
        asyncio.get_running_loop().call_later(self.backoff.next_delay(), self._again)

    def _again(self) -> None:
        asyncio.get_running_loop().create_task(self.connect())

    def on_event(self, event: dict[str, Any]) -> None:
        if event.get("id"):
            self.last_id = event["id"]
        if event.get("type") != "message":
            return
        n = event["data"].get("n")
        if n is None:
            return
        STATS.messages += 1
        if self.last_n and n <= self.last_n:
            STATS.duplicates += 1
            return
        if self.last_n:
            STATS.missing += n - self.last_n - 1
        self.last_n = n

    def on_subscribed(self, frame: dict[str, Any]) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
        if STATS.mark and self.resumed_after != STATS.mark:
            self.resumed_after = STATS.mark
            STATS.resumes.append(time.monotonic() - STATS.mark)
            if frame.get("recovering") and not frame.get("recovered"):
                STATS.not_recovered += 1


class Connection(asyncio.Protocol):
    """One WebSocket of a :class:`StormClient`."""

    def __init__(self, client: StormClient, request: bytes) -> None:
        self.client = client
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.close_code = "1006"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.upgraded:
            STATS.connected -= 1
        self.client.lost(self.close_code)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            status = take_status(buf)
            if status is None:
                return
            if b" 101 " not in status:
                self.close_code = status.decode(errors="replace")[9:12]
                self.transport.close()  # type: ignore[union-attr]
                return
            self.upgraded = True
            STATS.connected += 1
            self.client.backoff.reset()
        for opcode, payload in messages(buf, self.transport):  # type: ignore[arg-type]
            if opcode == 0x1:
                self.on_text(payload)
            else:
                if len(payload) >= 2:
                    self.close_code = str(int.from_bytes(payload[:2], "big"))
                self.transport.close()  # type: ignore[union-attr]
                return

    def on_text(self, payload: bytes) -> None:
        if payload.startswith(b'{"id"'):
            self.client.on_event(loads(payload))
        elif payload.startswith(b'{"type":"subscribed"'):
            self.client.on_subscribed(loads(payload))


async def main() -> None:
    job = read_job()
    clients = [StormClient(target) for target in job["targets"]]
    slots = asyncio.Semaphore(job.get("concurrency", 100))

    async def first(client: StormClient) -> None:
        async with slots:
            await client.connect()
            await asyncio.wait_for(asyncio.shield(client.ready), 120)

    await asyncio.gather(*(first(c) for c in clients))
    print(json.dumps({"ready": len(clients)}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        if line == "mark":
            STATS.mark = time.monotonic()
            STATS.resumes = []
            STATS.not_recovered = 0
            print(json.dumps({"marked": len(clients)}), flush=True)
        elif line == "report":
            print(
                json.dumps(
                    {
                        "clients": len(clients),
                        "connected": STATS.connected,
                        "resumed": len(STATS.resumes),
                        "resume_s": sorted(STATS.resumes),
                        "not_recovered": STATS.not_recovered,
                        "messages": STATS.messages,
                        "missing": STATS.missing,
                        "duplicates": STATS.duplicates,
                        "closes": dict(STATS.closes),
                    }
                ),
                flush=True,
            )
    for client in clients:
        client.stopping = True


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
