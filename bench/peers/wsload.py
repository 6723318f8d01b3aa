"""A lean WebSocket load generator: thousands of subscribers in one process (uvloop).

Standard library (+ uvloop/orjson when present) only, so any venv can run it. Each
connection is a bare asyncio protocol that does the HTTP upgrade and parses server frames
itself — a few microseconds per frame, so the generator is not what limits the system
under test. Speaks three dialects:

- ``chorus``: ``/ws/<room>`` frames are envelopes; published messages carry ``data.t``;
- ``socketio``: engine.io v4 over WebSocket (``40`` connect, ``2``/``3`` ping-pong,
  events ``42["message",{...}]``); a target with ``"join": room`` joins that room
  (``420["join",room]``, acknowledged) before it counts as up;
- ``manager``: the FastAPI-docs ConnectionManager, which broadcasts the raw text it got.

Reads a JSON job from the file argv[1]; prints ``ready`` once every connection is up, then on each
``report`` line on stdin prints a JSON report (counts, latency percentiles) and resets.
Frames are walked in place (no copy per frame); with ``"sample_every": k`` only every k-th
connection parses its messages for latency, so the generator's cost per frame stays low.

With ``"notify_fd": fd``, after a ``track`` command (which resets, like ``report``; the next
``report`` ends it), the generator writes ``<k>\n`` to that pipe the moment the k-th
message since then has reached every (non-stalled) connection: the signal a windowed
publisher waits for ("publish the next when the last subscriber got the
previous one"). Each connection receives a room's messages in order, so the k-th message a
connection counts is the k-th published; no frame needs parsing for it.

After a ``verify`` command (a reset; the next ``report`` ends it) every connection parses
every message and checks its number in the room (``data.n``: 1, 2, 3...): the report's
``missing`` and ``duplicates`` count what a connection did not get, or got twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

try:
    import orjson

    loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads


class Stats:
    def __init__(self) -> None:
        self.generation = 0
        #: ``notify_fd``: where completed message numbers go, and how many must see each.
        self.notify_fd: int | None = None
        self.tracked = 0
        self.tracking = False
        self.verifying = False
        #: Connections the server closed after they were up (never reset: ``open`` in peek).
        self.dropped = 0
        self.reset()

    def reset(self) -> None:
        self.generation += 1
        #: ``reached[k - 1]``: connections that have counted k messages since the reset.
        self.reached: list[int] = []
        #: ``verify``: messages a connection missed or got twice (by their number ``n``).
        self.missing = 0
        self.duplicates = 0
        self.frames = 0
        self.reads = 0  # data_received calls: frames / reads ~ frames per server write
        self.messages = 0
        self.latencies: list[float] = []
        self.first = 0.0
        self.last = 0.0

    def report(self, samples: int = 0) -> dict[str, Any]:
        """Counts and percentiles; with ``samples``, that many latencies (ms) spread evenly
        over the sorted distribution (its shape, for plots)."""
        lat = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else None

        return {
            "missing": self.missing,
            "duplicates": self.duplicates,
            "frames": self.frames,
            "reads": self.reads,
            "messages": self.messages,
            "first": self.first,
            "last": self.last,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": lat[-1] * 1000 if lat else None,
            "samples_ms": [
                round(lat[i * len(lat) // min(samples, len(lat))] * 1000, 3)
                for i in range(min(samples, len(lat)))
            ],
        }


STATS = Stats()


def next_frame(buf: bytearray, pos: int) -> tuple[int, int, int] | None:
    """The server frame at ``buf[pos:]`` as (opcode, payload start, payload end), or None
    while it is incomplete (server frames are unmasked: RFC 6455 5.2)."""
    size = len(buf)
    if size - pos < 2:
        return None
    length = buf[pos + 1] & 0x7F
    start = pos + 2
    if length == 126:
        if size - pos < 4:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        start = pos + 4
    elif length == 127:
        if size - pos < 10:
            return None
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
        start = pos + 10
    end = start + length
    if end > size:
        return None
    return buf[pos] & 0x0F, start, end


def _mask(payload: bytes, opcode: int = 0x1) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    header = bytearray([0x80 | opcode])
    if n < 126:
        header.append(0x80 | n)
    elif n < 65536:
        header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(header) + key + masked


class Client(asyncio.Protocol):
    def __init__(
        self,
        dialect: str,
        request: bytes,
        ready: asyncio.Future[None],
        stall: bool,
        sampled: bool = True,
        join: str | None = None,
    ):
        self.dialect = dialect
        #: Latencies are parsed on sampled connections only (all frames are counted).
        self.sampled = sampled
        self.request = request
        self.ready = ready
        self.stall = stall
        self.buf = bytearray()
        self.upgraded = False
        #: Messages counted since the reset of ``generation`` (the window's tracking).
        self.generation = 0
        self.count = 0
        #: The room's last message number seen since ``verified_generation`` (``verify``).
        self.verified_generation = 0
        self.last_n = 0
        #: socket.io: the room to join (``join`` event, acknowledged) before being ready.
        self.join = join
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc)))
        elif not self.ready.cancelled() and self.ready.exception() is None:
            STATS.dropped += 1

    def send_text(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(_mask(text.encode()))

    def data_received(self, data: bytes) -> None:
        STATS.reads += 1
        buf = self.buf
        buf += data
        if not self.upgraded:
            status = take_status(buf)
            if status is None:
                return
            if b" 101 " not in status:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(status.decode()))
                return
            self.upgraded = True
            if self.stall:
                self.transport.pause_reading()  # type: ignore[union-attr]
                self.ready.set_result(None)
                return
            if self.dialect != "socketio":
                self.ready.set_result(None)
        now = time.time()
        pos = 0
        while (frame := next_frame(buf, pos)) is not None:
            opcode, start, pos = frame
            if opcode == 0x1:
                self.on_text(buf, start, pos, now)
            elif opcode == 0x8:
                self.transport.close()  # type: ignore[union-attr]
                return
            elif opcode == 0x9:  # answer protocol pings, or the server drops us after a while
                self.transport.write(_mask(bytes(buf[start:pos]), 0xA))  # type: ignore[union-attr]
        del buf[:pos]

    def on_text(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """One text frame in ``buf[start:end]`` (parsed only on latency-sampled sockets,
        or on every socket while verifying)."""
        STATS.frames += 1
        parse = self.sampled or STATS.verifying
        if self.dialect == "chorus":
            if buf.find(b'"type":"message"', start, end) < 0:
                return
            data = loads(bytes(buf[start:end]))["data"] if parse else None
        elif self.dialect == "socketio":
            if buf.startswith(b"42", start, end):
                data = loads(bytes(buf[start + 2 : end]))[1] if parse else None
            else:
                self.on_engine_io(bytes(buf[start:end]))
                return
        else:
            data = loads(bytes(buf[start:end])) if parse else None
        STATS.messages += 1
        if STATS.tracking and not self.stall:
            self.track()
        if not STATS.first:
            STATS.first = now
        STATS.last = now
        if data is not None:
            if self.sampled and data.get("t") is not None:
                STATS.latencies.append(now - data["t"])
            if STATS.verifying:
                self.verify(data.get("n"))

    def on_engine_io(self, payload: bytes) -> None:
        """socket.io's own packets: ping, connect, and the ack of our ``join``."""
        if payload == b"2":
            self.send_text("3")
        elif payload.startswith(b"40"):
            if self.join is not None:
                self.send_text(f'420["join",{json.dumps(self.join)}]')
            elif not self.ready.done():
                self.ready.set_result(None)
        elif payload.startswith(b"430"):
            if not self.ready.done():
                self.ready.set_result(None)
        elif payload.startswith(b"0"):
            self.send_text("40")

    def verify(self, n: int | None) -> None:
        """A room's messages arrive numbered 1, 2, 3...: count what is missing or repeated."""
        if n is None:
            return
        if self.verified_generation != STATS.generation:
            self.verified_generation, self.last_n = STATS.generation, n
            return
        if n <= self.last_n:
            STATS.duplicates += 1
            return
        STATS.missing += n - self.last_n - 1
        self.last_n = n

    def track(self) -> None:
        """Count one message; tell the publisher when it was the last to get that one."""
        if self.generation != STATS.generation:
            self.generation, self.count = STATS.generation, 0
        self.count += 1
        reached = STATS.reached
        if self.count > len(reached):
            reached.append(0)
        reached[self.count - 1] += 1
        if reached[self.count - 1] == STATS.tracked:
            os.write(STATS.notify_fd, b"%d\n" % self.count)  # type: ignore[arg-type]


def _request(host: str, port: int, path: str, headers: list[str]) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def take_status(buf: bytearray) -> bytes | None:
    """The status line of the upgrade response at the start of ``buf`` (its head is then
    dropped from ``buf``), or None while the head is incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    status = bytes(buf[:end]).split(b"\r\n", 1)[0]
    del buf[: end + 4]
    return status


def messages(buf: bytearray, transport: asyncio.Transport) -> Iterator[tuple[int, bytes]]:
    """The complete text (0x1) and close (0x8) frames in ``buf`` as (opcode, payload);
    answers pings itself, and drops what it walked from ``buf`` when done or closed.

    For clients that parse every frame anyway (a generator step per frame is too dear for
    the fan-out clients above, which walk frames inline)."""
    pos = 0
    try:
        while (frame := next_frame(buf, pos)) is not None:
            opcode, start, pos = frame
            if opcode == 0x9:
                transport.write(_mask(bytes(buf[start:pos]), 0xA))
            elif opcode in (0x1, 0x8):
                yield opcode, bytes(buf[start:pos])
    finally:
        del buf[:pos]


def read_job() -> dict[str, Any]:
    """The JSON job in the file argv[1]; raises this process's file descriptor limit to
    its hard limit on the way (one per connection)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with open(sys.argv[1]) as fh:
        job: dict[str, Any] = json.load(fh)
    return job


async def main() -> None:
    job = read_job()
    loop = asyncio.get_running_loop()
    clients: list[Client] = []
    targets = job["targets"]  # [{"host", "port", "path", "headers": [...]}]
    stall = job.get("stall", 0)
    concurrency = asyncio.Semaphore(job.get("concurrency", 50))

    sample = int(job.get("sample_every", 1))

    async def open_one(index: int, target: dict[str, Any], stalled: bool) -> None:
        async with concurrency:
            ready = loop.create_future()
            request = _request(
                target["host"], target["port"], target["path"], target.get("headers", [])
            )

            def factory() -> Client:
                return Client(
                    job["dialect"],
                    request,
                    ready,
                    stalled,
                    index % sample == 0,
                    target.get("join"),
                )

            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if stalled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, (target["host"], target["port"]))
            _, proto = await loop.create_connection(factory, sock=sock)
            await asyncio.wait_for(ready, 30)
            clients.append(proto)

    await asyncio.gather(*(open_one(i, t, i < stall) for i, t in enumerate(targets)))
    if job.get("notify_fd") is not None:
        STATS.notify_fd = int(job["notify_fd"])
        STATS.tracked = len(clients) - min(stall, len(clients))
    print(json.dumps({"ready": len(clients)}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        if line == "peek":
            print(
                json.dumps(
                    {
                        "messages": STATS.messages,
                        "last": STATS.last,
                        "open": len(clients) - STATS.dropped,
                    }
                ),
                flush=True,
            )
        elif line.startswith("report"):  # "report [<samples>]"
            samples = int(line[6:] or 0)
            print(json.dumps(STATS.report(samples)), flush=True)
            STATS.reset()
            STATS.tracking = STATS.verifying = False
        elif line == "verify":  # reset, and check every message's number until the report
            STATS.reset()
            STATS.verifying = True
            print(json.dumps({"verifying": len(clients)}), flush=True)
        elif line == "track" and STATS.notify_fd is not None:
            STATS.reset()
            STATS.tracking = True
            print(json.dumps({"tracking": STATS.tracked}), flush=True)
        elif line.startswith("send "):
            # "send <text>": the first client sends a frame (the manager's publisher path).
            clients[0].send_text(line[5:])


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
