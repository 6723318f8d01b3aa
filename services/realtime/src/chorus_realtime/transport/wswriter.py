"""The writers of WebSocket connections: their frames, in order, then their close frame.

Most of the time a socket takes whatever is written to it, and nothing is queued for it:
then the hub's live events are written by :meth:`SocketWriter.write_now`, the
connection's direct path, at once — one ``send`` per socket per read from Redis, whether
that read held one event or a burst, with no queue, no callback and no task in between.

What is queued (replies, a replay, events that came while the socket pushed back) is
written by the :class:`Flusher`: once per event-loop iteration it lets every writer that
got frames take them all and write them in one go. Only when a socket pushes back (the
client reads slower than events arrive), or when the connection closes, does its writer run
as a task: it waits for the socket to drain, keeps writing, and — once the outbox is closed
and empty — sends the farewell frame and the close frame.

So an idle connection costs no task, no coroutine frame and no future for writing.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Send

from chorus_realtime.domain.connection import CloseCode, Connection
from chorus_realtime.transport.wsprotocol import FrameTransport

__all__ = ["Flusher", "SocketWriter"]

logger = logging.getLogger("chorus.realtime.ws")


class Flusher:
    """Flushes, once per event-loop iteration, every writer that got frames since the last."""

    __slots__ = ("_loop", "_pending")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[SocketWriter] = []

    def add(self, writer: SocketWriter) -> None:
        """Give ``writer`` a turn at the next flush."""
        if not self._pending:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._flush)
        self._pending.append(writer)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for writer in pending:
            writer.flush()


class SocketWriter:
    """Writes ``connection``'s frames to ``transport``; closes with ``send`` (ASGI)."""

    __slots__ = ("_connection", "_flusher", "_scheduled", "_send", "_task", "_transport")

    def __init__(
        self, connection: Connection, transport: FrameTransport, send: Send, flusher: Flusher
    ) -> None:
        self._connection = connection
        self._transport = transport
        self._send = send
        self._flusher = flusher
        self._scheduled = False
        self._task: asyncio.Task[None] | None = None
        connection.outbox.on_ready = self.wake
        connection.direct = self.write_now

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` (encoded frames) at once if the socket takes it; else False.

        The connection asks only when nothing of its own is queued; a writer task means a
        backlog is still draining, so the answer is no until it caught up.
        """
        transport = self._transport
        if self._task is None and transport.can_write:
            transport.write_frames(data)
            return True
        return False

    def wake(self) -> None:
        """Frames were queued, or the connection closed: write at the next flush."""
        if not self._scheduled and self._task is None:
            self._scheduled = True
            self._flusher.add(self)

    def flush(self) -> None:
        """Write what is queued while the socket takes it; hand over to a task if it doesn't."""
        self._scheduled = False
        if self._task is not None:
            return
        if not self._write() or self._connection.outbox.closed:
            self.finish()

    def finish(self) -> asyncio.Task[None]:
        """The task that writes what is left, then the close frame (once closed)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        return self._task

    def _write(self) -> bool:
        """Write every queued frame if the socket takes data; True once all are written."""
        transport = self._transport
        if not transport.can_write:
            return False
        frames = self._connection.take_all()
        if frames:
            if len(frames) == 1:
                transport.write_frames(frames[0].websocket())
            else:
                transport.write_frames(b"".join([frame.websocket() for frame in frames]))
        return True

    async def _run(self) -> None:
        connection = self._connection
        transport = self._transport
        try:
            while not self._write():
                if not transport.open:
                    connection.close(CloseCode.NORMAL, "")
                    return
                await transport.wait_writable()
            if not connection.outbox.closed:
                return  # caught up: back to writing without a task
            farewell = connection.farewell()
            if farewell is not None and transport.can_write:
                transport.write_frames(farewell.websocket())
            reason = connection.close_reason_with_position()
            code = connection.close_code or CloseCode.NORMAL
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except Exception as exc:  # the client went away mid-write
            logger.debug("writer of %s ended: %s", connection, exc)
            connection.close(CloseCode.NORMAL, "")
        finally:
            if connection.outbox.closed:
                connection.outbox.clear()
            else:
                self._task = None
