"""The lean stream client against a raw HTTP/1.1 server, on uvloop as in production."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvloop

from chorus_gateway.transport.http1 import Http1Pool

Scenario = Callable[[str, list[str]], Awaitable[None]]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _serve(mode: str, scenario: Scenario) -> None:
    """Run ``scenario(url, events)`` against a server answering every POST in ``mode``."""
    events: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        events.append("connect")
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                events.append("request " + (await reader.readexactly(length)).decode())
                if mode == "eof":  # a body delimited by the end of the connection
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
                    writer.write(b"data: 1\n\ndata: [DONE]\n\n")
                    await writer.drain()
                    break
                writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                writer.write(_chunk(b"data: 1\n\n") + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
                await writer.drain()
                if mode == "close":  # an idle connection the server drops without notice
                    break
        except asyncio.IncompleteReadError:
            events.append("client closed")
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        await scenario(f"http://127.0.0.1:{port}/v1/chat/completions", events)
    finally:
        server.close()


def _pool(url: str) -> Http1Pool:
    return Http1Pool(
        url,
        {"Authorization": "Bearer sk"},
        max_connections=4,
        connect_timeout=2,
        keepalive_expiry=60,
    )


def test_sequential_streams_share_one_kept_alive_connection() -> None:
    async def scenario(url: str, events: list[str]) -> None:
        pool = _pool(url)
        for body in (b"a", b"b", b"c"):
            response = await pool.post(body)
            assert response.status_code == 200
            assert await response.aread() == b"data: 1\n\ndata: [DONE]\n\n"
            await response.aclose()
        assert events == ["connect", "request a", "request b", "request c"]
        await pool.aclose()

    uvloop.run(_serve("keep", scenario))


def test_a_connection_the_server_dropped_is_replaced_transparently() -> None:
    async def scenario(url: str, events: list[str]) -> None:
        pool = _pool(url)
        for body in (b"a", b"b"):
            response = await pool.post(body)
            assert await response.aread() == b"data: 1\n\ndata: [DONE]\n\n"
            await response.aclose()
        assert events == ["connect", "request a", "connect", "request b"]
        await pool.aclose()

    uvloop.run(_serve("close", scenario))


def test_a_body_ended_by_the_connection_is_read_whole() -> None:
    async def scenario(url: str, events: list[str]) -> None:
        pool = _pool(url)
        response = await pool.post(b"a")
        assert response.headers["content-type"] == "text/event-stream"
        assert await response.aread() == b"data: 1\n\ndata: [DONE]\n\n"
        await pool.aclose()

    uvloop.run(_serve("eof", scenario))


def test_closing_a_response_early_closes_its_connection() -> None:
    async def scenario(url: str, events: list[str]) -> None:
        pool = _pool(url)
        response = await pool.post(b"a")
        await response.aclose()  # before reading the body: the provider must see it
        deadline = asyncio.get_running_loop().time() + 5
        while "client closed" not in events:
            assert asyncio.get_running_loop().time() < deadline, events
            await asyncio.sleep(0.01)
        await pool.aclose()

    uvloop.run(_serve("keep", scenario))
