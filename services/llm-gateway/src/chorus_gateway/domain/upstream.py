"""One provider's client: the ``openai`` SDK for plain calls, a lean HTTP/1.1 pool for streams.

The SDK's ``AsyncOpenAI`` holds the provider's configuration (base URL, auth, its
headers) and sends the non-streamed calls: ``AsyncOpenAI.post`` with ``cast_to`` the raw
response, so the body is relayed, never parsed into models, over the SDK's HTTP pool
(httpx2 on aiohttp, whose C parser reads several times faster than h11). Streams do not
go through the SDK: they are sent on a pool of our own (``transport/http1.Http1Pool``,
httptools) with the headers the SDK computes (auth, its identification) encoded once,
skipping the SDK's per-call machinery, and their bytes are relayed as they arrive. The
SDK's own retries are off: the gateway retries and falls back itself, and only before the
first byte.

Both pools hold ``max_connections`` connections, all kept alive (a burst of 200 streams
would otherwise reconnect 100 of them every time); connecting (and, for the SDK, the
pool wait and writes) is bounded by the provider's ``connect`` timeout; reads are not:
the relay enforces the time-to-first-token, idle and total timeouts itself, each with its
own error.
"""

from __future__ import annotations

import httpx2
import orjson
from openai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncOpenAI,
    DefaultAioHttpClient,
)

from chorus_gateway.domain.providers import ProviderConfig
from chorus_gateway.transport.http1 import ConnectError, Http1Pool, StreamResponse

__all__ = ["Upstream", "UpstreamFailure"]

#: Statuses that are the client's own mistake: relayed as they are, never retried.
CLIENT_ERRORS = frozenset({400, 413, 422})
_KEEPALIVE_EXPIRY = 60.0


class UpstreamFailure(Exception):
    """An attempt failed before the stream reached the client (or during it)."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        body: bytes | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.body = body
        self.retry_after = retry_after

    @property
    def client_error(self) -> bool:
        """The provider refused the request itself: no other provider would accept it."""
        return self.status in CLIENT_ERRORS

    @property
    def timeout(self) -> bool:
        """A timeout of the gateway's (first token, idle, total) or of the connection."""
        return self.kind.startswith("timeout")


def _failure(status: int, body: bytes, retry_after: str | None) -> UpstreamFailure:
    kind = "status_429" if status == 429 else "status_5xx" if status >= 500 else "status_4xx"
    try:
        message = str(orjson.loads(body)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = body[:200].decode(errors="replace")
    return UpstreamFailure(
        kind, f"HTTP {status}: {message}", status=status, body=body, retry_after=retry_after
    )


def _status_failure(error: APIStatusError) -> UpstreamFailure:
    response = error.response
    return _failure(response.status_code, response.content, response.headers.get("retry-after"))


class Upstream:
    """Sends chat completion requests to one provider."""

    def __init__(self, config: ProviderConfig, api_key: str) -> None:
        self.config = config
        self.name = config.name
        timeouts = config.timeouts
        timeout = httpx2.Timeout(
            connect=timeouts.connect, read=None, write=timeouts.connect, pool=timeouts.connect
        )
        self.http = DefaultAioHttpClient(
            timeout=timeout,
            limits=httpx2.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
            ),
        )
        self.client = AsyncOpenAI(
            base_url=config.base_url,
            api_key=api_key,
            organization=None,
            project=None,
            max_retries=0,
            timeout=timeout,
            http_client=self.http,
            default_headers=config.headers or None,
        )

        # Streams go through a lean HTTP/1.1 pool (``http1``) with the headers the SDK
        # computes (auth, its identification) encoded once: profiling showed the SDK's
        # per-call option copying at ~0.25 ms and the general HTTP clients under it at
        # ~0.35 ms more, most of the gateway's time-to-first-token budget.
        headers = {
            k: v
            for k, v in {**self.client.default_headers, **self.client.auth_headers}.items()
            if isinstance(v, str)
        }
        self._streams = Http1Pool(
            str(self.client.base_url).rstrip("/") + "/chat/completions",
            headers,
            max_connections=config.max_connections,
            connect_timeout=timeouts.connect,
            keepalive_expiry=_KEEPALIVE_EXPIRY,
        )

    async def send(self, body: bytes) -> httpx2.Response:
        """POST ``/chat/completions`` (not streamed); the response, or a failure."""
        try:
            return await self.client.post(
                "/chat/completions", cast_to=httpx2.Response, content=body, stream=False
            )
        except APIStatusError as error:
            raise _status_failure(error) from None
        except APITimeoutError:
            raise UpstreamFailure("connect", "timed out connecting to the provider") from None
        except APIConnectionError as error:
            cause = error.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(error)
            raise UpstreamFailure("connect", f"connection failed ({detail})") from None

    async def send_stream(self, body: bytes) -> StreamResponse:
        """POST a streamed ``/chat/completions``; the response (body unread), or a failure."""
        try:
            response = await self._streams.post(body)
        except ConnectError as error:
            raise UpstreamFailure("connect", f"connection failed ({error})") from None
        except OSError as error:
            raise UpstreamFailure(
                "connect", f"connection failed ({type(error).__name__}: {error})"
            ) from None
        if response.status_code >= 400:
            try:
                content = await response.aread()
            finally:
                await response.aclose()
            raise _failure(response.status_code, content, response.headers.get("retry-after"))
        return response

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self._streams.aclose()
        await self.client.close()
