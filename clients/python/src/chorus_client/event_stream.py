"""``EventStreamClient``: a user's notifications over Server-Sent Events (``GET /events``).

The token goes in the ``Authorization`` header; on every reconnect the client sends
``Last-Event-ID`` (the stream id of the last event it received) and the server replays
what it missed before going live, exactly once. A 401 or 403 is final; any other refusal
(a 429 for too many connections, a 503 while the server drains) is retried with backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx
import orjson
from httpx_sse import aconnect_sse

from chorus_client.backoff import Backoff
from chorus_client.reconnecting import Close, FrameHandler, ReconnectingClient

__all__ = ["EventStreamClient"]

#: Seconds without a byte before the stream counts as dead (the server pings every 15 s).
READ_TIMEOUT = 60.0


class EventStreamClient(ReconnectingClient):
    """An SSE client of ``/events`` that resumes with ``Last-Event-ID``."""

    def __init__(
        self,
        base_urls: Sequence[str],
        token: str,
        *,
        path: str = "/events",
        last_event_id: str | None = None,
        backoff: Backoff | None = None,
        on_frame: FrameHandler | None = None,
        max_frames: int | None = None,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        super().__init__(base_urls, backoff=backoff, on_frame=on_frame, max_frames=max_frames)
        self.token = token
        self.path = path
        self.last_id = last_event_id
        #: The HTTP status of every connection attempt that got an answer.
        self.statuses: list[int] = []
        #: Makes each connection's httpx transport (a CA of your own, a fixed address).
        self.transport = transport

    async def connect_once(self) -> Close | None:
        """One ``GET /events``, read until it ends."""
        url = f"{self.current_url}{self.path}"
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        timeout = httpx.Timeout(5.0, read=READ_TIMEOUT)
        try:
            async with (
                httpx.AsyncClient(
                    timeout=timeout,
                    trust_env=False,
                    transport=self.transport() if self.transport is not None else None,
                ) as client,
                aconnect_sse(client, "GET", url, headers=headers) as source,
            ):
                status = source.response.status_code
                self.statuses.append(status)
                if status != 200:
                    await source.response.aread()
                    code = 1008 if status in {401, 403} else 1013
                    return Close(code, source.response.text, url)
                self.connection_made()
                async for event in source.aiter_sse():
                    if event.data:
                        self.record(orjson.loads(event.data))
        except (httpx.HTTPError, OSError) as exc:
            return Close(1006, f"{type(exc).__name__}: {exc}", url)
        return Close(1000, "stream ended", url)
