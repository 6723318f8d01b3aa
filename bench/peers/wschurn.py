"""Room churn: clients that keep entering and leaving rooms they are alone in, one process.

Each churner holds one WebSocket and, until stopped, enters a room of its own, then leaves
it, then enters it again...: on a Chorus replica every entry is the room's first local
member (the replica SUBSCRIBEs, joins presence, publishes ``join``) and every exit its last
(UNSUBSCRIBE, ``leave``). Dialects:

- ``chorus``: ``{"type":"subscribe","channel":"room:<r>","since":<last id>}`` until
  ``subscribed``, then ``unsubscribe`` until ``unsubscribed``. With ``since``, whatever the
  room got while the churner was out is replayed on entry: the churner checks that the
  numbered messages (``data.n``) of its room arrive each exactly once, across its visits;
- ``socketio``: ``join`` / ``leave`` events (acknowledged) of the peer's server.

Reads a JSON job from argv[1] (``dialect``, ``targets`` with a ``room`` each); prints
``ready`` once every churner is connected; ``start`` begins churning; ``report`` prints
entries and exits completed since ``start`` and any error, then stops.
"""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import sys
import time
from typing import Any

from wsload import _mask, _request, loads, messages, read_job, take_status


class Churner(asyncio.Protocol):
    """One WebSocket that enters and leaves its room on command."""

    def __init__(self, dialect: str, request: bytes, room: str) -> None:
        self.dialect = dialect
        self.request = request
        self.room = room
        self.channel = f"room:{room}"
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting: asyncio.Future[None] | None = None
        self.expect = b""
        self.last_id: str | None = None
        self.last_n = 0
        self.seen = 0
        self.missing = 0
        self.duplicates = 0
        self.errors: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        error = ConnectionError(f"connection lost: {exc}")
        for future in (self.ready, self.waiting):
            if future is not None and not future.done():
                future.set_exception(error)

    def send(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(_mask(text.encode()))

    async def exchange(self, text: str, expect: bytes) -> None:
        """Send ``text``; return once a frame starting with ``expect`` came back."""
        self.waiting = asyncio.get_running_loop().create_future()
        self.expect = expect
        self.send(text)
        await asyncio.wait_for(self.waiting, 30)

    async def visit(self) -> None:
        """Enter the room and leave it again."""
        if self.dialect == "chorus":
            body: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
            if self.last_id is not None:
                body["since"] = self.last_id
            await self.exchange(json.dumps(body), b'{"type":"subscribed"')
            await self.exchange(
                json.dumps({"type": "unsubscribe", "channel": self.channel}),
                b'{"type":"unsubscribed"',
            )
        else:
            await self.exchange(f'421["join",{json.dumps(self.room)}]', b"431")
            await self.exchange(f'422["leave",{json.dumps(self.room)}]', b"432")

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            status = take_status(buf)
            if status is None:
                return
            if b" 101 " not in status:
                self.ready.set_exception(ConnectionError(status.decode()))
                return
            self.upgraded = True
            if self.dialect == "chorus":
                self.ready.set_result(None)
        for opcode, payload in messages(buf, self.transport):  # type: ignore[arg-type]
            if opcode == 0x1:
                self.on_text(payload)
            else:
                self.errors.append(f"closed: {payload[2:].decode(errors='replace')}")
                self.transport.close()  # type: ignore[union-attr]
                return

    def on_text(self, payload: bytes) -> None:
        if self.dialect == "socketio":
            if payload == b"2":
                self.send("3")
            elif payload.startswith(b"0"):
                self.send("40")
            elif payload.startswith(b"40") and not self.ready.done():
                self.ready.set_result(None)
        elif payload.startswith(b'{"id"'):  # an event of the churner's room
            event = loads(payload)
            if event.get("channel") == self.channel and event.get("id"):
                self.last_id = event["id"]
            if event.get("type") == "error":
                self.errors.append(str(event.get("data")))
            if event.get("type") == "message" and event.get("channel") == self.channel:
                self.count(event["data"].get("n"))
        waiting = self.waiting
        if waiting is not None and not waiting.done() and payload.startswith(self.expect):
            waiting.set_result(None)

    def count(self, n: int | None) -> None:
        if n is None:
            return
        self.seen += 1
        if n <= self.last_n:
            self.duplicates += 1
        else:
            self.missing += max(0, n - self.last_n - 1) if self.last_n else 0
            self.last_n = n


def _same(churner: Churner) -> Churner:
    """The protocol factory of one already-made churner."""
    return churner


async def main() -> None:
    job = read_job()
    loop = asyncio.get_running_loop()
    churners: list[Churner] = []
    for target in job["targets"]:
        request = _request(
            target["host"], target["port"], target["path"], target.get("headers", [])
        )
        churner = Churner(job["dialect"], request, target["room"])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (target["host"], target["port"]))
        await loop.create_connection(functools.partial(_same, churner), sock=sock)
        await asyncio.wait_for(churner.ready, 30)
        churners.append(churner)
    print(json.dumps({"ready": len(churners)}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()  # start
    visits = [0]
    failures: list[str] = []
    stop = asyncio.Event()

    async def churn(churner: Churner) -> None:
        while not stop.is_set():
            try:
                await churner.visit()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return
            visits[0] += 1

    started = time.monotonic()
    tasks = [asyncio.create_task(churn(c)) for c in churners]
    await reader.readline()  # report
    stop.set()
    seconds = time.monotonic() - started
    await asyncio.wait(tasks, timeout=35)
    print(
        json.dumps(
            {
                "visits": visits[0],
                "seconds": seconds,
                "visits_per_s": visits[0] / seconds,
                "missing": sum(c.missing for c in churners),
                "duplicates": sum(c.duplicates for c in churners),
                "messages_seen": sum(c.seen for c in churners),
                "errors": [e for c in churners for e in c.errors][:10] + failures[:10],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
