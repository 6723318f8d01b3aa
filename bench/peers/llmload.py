"""A lean HTTP/1.1 load generator for OpenAI-style chat completions (uvloop, its own process).

Standard library + uvloop, so any venv can run it. Raw asyncio streams and a few bytes of
parsing per read, so it costs the proxy under test as little as a client can. Modes:

- ``ttft``: ``--requests`` streamed completions one after another on one keep-alive
  connection (fewer if they take over ``--max-seconds``); prints the seconds from sending
  each to its first ``data: {`` event;
- ``complete``: the same with ``"stream": false``; prints each request's seconds to the
  end of its JSON body;
- ``throughput``: ``--streams`` connections streaming back to back; prints ``READY`` once
  connected and warmed up, starts on a line on stdin, and after ``--seconds`` (longer, up
  to five times, while fewer events than streams arrived) prints the events and streams it
  counted and the seconds it took.

``--header "Name: value"`` (repeatable) adds request headers (a proxy's routing headers).
Every response must be a 200, or the run fails loudly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

#: ``throughput``: the longest run, in ``--seconds``, for a proxy slow to answer at all.
SLOW_FACTOR = 5


def request_bytes(port: int, key: str, tokens: int, *, stream: bool, headers: list[str]) -> bytes:
    body = json.dumps(
        {
            "model": "mock-gpt",
            "messages": [{"role": "user", "content": f"bench [mock tokens={tokens}]"}],
            "stream": stream,
        }
    ).encode()
    extra = "".join(f"{header}\r\n" for header in headers)
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:300].decode(errors="replace"))
    return head


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


async def one_stream(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    counter: dict[str, int] | None = None,
) -> tuple[float, int]:
    """Send one streamed request on a kept-alive connection; (seconds to first event, events).

    ``counter["events"]`` (if given) counts events as they arrive.
    """
    start = time.perf_counter()
    writer.write(request)
    await _head(reader)
    first = 0.0
    events = 0
    carry = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            break
        data = carry + (await reader.readexactly(size + 2))[:-2]
        found = data.count(b"data: {")
        if found and not first:
            first = time.perf_counter() - start
        events += found
        if counter is not None:
            counter["events"] += found
        carry = data[-6:]
    return first, events


async def one_completion(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> float:
    """Send one non-streamed request; seconds until its whole JSON body arrived."""
    start = time.perf_counter()
    writer.write(request)
    head = await _head(reader)
    length = _content_length(head)
    if length is not None:
        body = await reader.readexactly(length)
    else:  # chunked
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append((await reader.readexactly(size + 2))[:-2])
        body = b"".join(parts)
    elapsed = time.perf_counter() - start
    if b'"choices"' not in body:
        raise RuntimeError(body[:300].decode(errors="replace"))
    return elapsed


class Connection:
    """A kept-alive connection that reconnects when the server closed it while idle."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        return self.reader, self.writer

    async def stream(
        self, request: bytes, counter: dict[str, int] | None = None
    ) -> tuple[float, int]:
        for attempt in (1, 2):
            reader, writer = await self._open()
            try:
                return await one_stream(reader, writer, request, counter)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def complete(self, request: bytes) -> float:
        for attempt in (1, 2):
            reader, writer = await self._open()
            try:
                return await one_completion(reader, writer, request)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def sequential(args: argparse.Namespace, *, stream: bool) -> list[float]:
    """``--warmup`` then ``--requests`` requests one after another; their timings.

    A slow target stops early: the warm-up after a quarter of ``--max-seconds``, the
    measured requests after ``--max-seconds`` (then there are fewer samples).
    """
    connection = Connection(args.port)
    request = request_bytes(args.port, args.key, 16, stream=stream, headers=args.header)
    samples: list[float] = []
    for count, budget, keep in (
        (args.warmup, args.max_seconds / 4, False),
        (args.requests, args.max_seconds, True),
    ):
        deadline = time.perf_counter() + budget
        for _ in range(count):
            if stream:
                took, _ = await connection.stream(request)
            else:
                took = await connection.complete(request)
            if keep:
                samples.append(took)
            if time.perf_counter() > deadline:
                break
    connection.close()
    return samples


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Streams back to back on every connection; events counted for exactly ``--seconds``."""
    headers = args.header
    request = request_bytes(args.port, args.key, args.stream_tokens, stream=True, headers=headers)
    connections = [Connection(args.port) for _ in range(args.streams)]
    warmup = request_bytes(args.port, args.key, 1, stream=True, headers=headers)
    await asyncio.gather(*(c.stream(warmup) for c in connections))  # connect and warm up
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    totals = {"events": 0, "streams": 0}

    async def worker(connection: Connection) -> None:
        while True:
            await connection.stream(request, totals)
            totals["streams"] += 1

    started = time.perf_counter()
    tasks = [asyncio.create_task(worker(c)) for c in connections]
    # A slow proxy on a busy machine may not have answered any stream yet when --seconds
    # are up (LiteLLM takes ~0.1 s of CPU per stream): then it is counted on until as many
    # events as streams arrived, for at most SLOW_FACTOR times --seconds.
    done: set[asyncio.Task[None]] = set()
    while not done:
        elapsed = time.perf_counter() - started
        if elapsed >= args.seconds * SLOW_FACTOR or (
            elapsed >= args.seconds and totals["events"] >= args.streams
        ):
            break
        wait = args.seconds - elapsed if elapsed < args.seconds else 0.05
        done, _ = await asyncio.wait(tasks, timeout=wait)
    elapsed = time.perf_counter() - started
    result = {**totals, "seconds": elapsed}
    for task in done:
        task.result()  # a failed stream fails the run loudly
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for connection in connections:
        connection.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["ttft", "complete", "throughput"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--header", action="append", default=[], help='"Name: value"')
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument(
        "--max-seconds", type=float, default=5.0, help="longest sequential phase (slow targets)"
    )
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--stream-tokens", type=int, default=50)
    args = parser.parse_args()
    try:
        import uvloop  # noqa: PLC0415 - any interpreter may run this; uvloop when it has it

        run: Any = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    if args.mode == "throughput":
        result: Any = run(throughput(args))
    else:
        result = run(sequential(args, stream=args.mode == "ttft"))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
