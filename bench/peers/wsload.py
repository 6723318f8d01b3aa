"""A lean WebSocket load generator: thousands of subscribers in one process (uvloop).

Standard library (+ uvloop/orjson when present) only, so any venv can run it. Each
connection is a bare asyncio protocol that does the HTTP upgrade and parses server frames
itself — a few microseconds per frame, so the generator is not what limits the system
under test. Speaks three dialects:

- ``chorus``: ``/ws/<room>`` frames are envelopes; published messages carry ``data.t``;
- ``socketio``: engine.io v4 over WebSocket (``40`` connect, ``2``/``3`` ping-pong,
  events ``42["message",{...}]``);
- ``manager``: the FastAPI-docs ConnectionManager, which broadcasts the raw text it got.

Reads a JSON job from the file argv[1]; prints ``ready`` once every connection is up, then on each
``report`` line on stdin prints a JSON report (counts, latency percentiles) and resets.
Frames are walked in place (no copy per frame); with ``"sample_every": k`` only every k-th
connection parses its messages for latency, so the generator's cost per frame stays low.
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
from collections.abc import Callable
from typing import Any

try:
    import orjson

    loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover
    loads = json.loads


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
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
    ):
        self.dialect = dialect
        #: Latencies are parsed on sampled connections only (all frames are counted).
        self.sampled = sampled
        self.request = request
        self.ready = ready
        self.stall = stall
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(str(exc)))

    def send_text(self, text: str) -> None:
        if self.transport is not None:
            self.transport.write(_mask(text.encode()))

    def data_received(self, data: bytes) -> None:
        STATS.reads += 1
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:end]).split(b"\r\n", 1)[0]
            if b" 101 " not in status:
                if not self.ready.done():
                    self.ready.set_exception(ConnectionError(status.decode()))
                return
            del buf[: end + 4]
            self.upgraded = True
            if self.stall:
                self.transport.pause_reading()  # type: ignore[union-attr]
                self.ready.set_result(None)
                return
            if self.dialect != "socketio":
                self.ready.set_result(None)
        now = time.time()
        pos, size = 0, len(buf)
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            pos = end
            if opcode == 0x1:
                self.on_text(buf, start, end, now)
            elif opcode == 0x8:
                self.transport.close()  # type: ignore[union-attr]
                return
            elif opcode == 0x9:  # answer protocol pings, or the server drops us after a while
                self.transport.write(_mask(bytes(buf[start:end]), 0xA))  # type: ignore[union-attr]
        del buf[:pos]

    def on_text(self, buf: bytearray, start: int, end: int, now: float) -> None:
        """One text frame in ``buf[start:end]`` (parsed only on latency-sampled sockets)."""
        STATS.frames += 1
        if self.dialect == "chorus":
            if buf.find(b'"type":"message"', start, end) < 0:
                return
            t = loads(bytes(buf[start:end]))["data"].get("t") if self.sampled else None
        elif self.dialect == "socketio":
            if buf.startswith(b"42", start, end):
                t = loads(bytes(buf[start + 2 : end]))[1].get("t") if self.sampled else None
            else:
                payload = bytes(buf[start:end])
                if payload == b"2":
                    self.send_text("3")
                elif payload.startswith(b"40"):
                    if not self.ready.done():
                        self.ready.set_result(None)
                elif payload.startswith(b"0"):
                    self.send_text("40")
                return
        else:
            t = loads(bytes(buf[start:end])).get("t") if self.sampled else None
        STATS.messages += 1
        if not STATS.first:
            STATS.first = now
        STATS.last = now
        if t is not None:
            STATS.latencies.append(now - t)


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


async def main() -> None:
    with open(sys.argv[1]) as fh:
        job = json.load(fh)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
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
                return Client(job["dialect"], request, ready, stalled, index % sample == 0)

            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if stalled:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, (target["host"], target["port"]))
            _, proto = await loop.create_connection(factory, sock=sock)
            await asyncio.wait_for(ready, 30)
            clients.append(proto)

    await asyncio.gather(*(open_one(i, t, i < stall) for i, t in enumerate(targets)))
    print(json.dumps({"ready": len(clients)}), flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = (await reader.readline()).decode().strip()
        if not line or line == "quit":
            break
        if line == "peek":
            print(json.dumps({"messages": STATS.messages, "last": STATS.last}), flush=True)
        elif line.startswith("report"):  # "report [<samples>]"
            samples = int(line[6:] or 0)
            print(json.dumps(STATS.report(samples)), flush=True)
            STATS.reset()
        elif line.startswith("send "):
            # "send <text>": the first client sends a frame (the manager's publisher path).
            clients[0].send_text(line[5:])


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:  # pragma: no cover
        asyncio.run(main())
