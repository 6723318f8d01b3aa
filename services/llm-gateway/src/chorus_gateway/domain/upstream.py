"""One provider's client: an ``openai.AsyncOpenAI`` on a pool sized for many streams.

The SDK builds requests (base URL, auth, its headers) and maps failures to its exception
classes; the gateway asks it for the raw ``httpx2.Response`` (``cast_to=httpx2.Response``)
so a stream's bytes are relayed as they arrive, never parsed into models and re-encoded.
The SDK's own retries are off: the gateway retries and falls back itself, and only
before the first byte.

Pool: ``max_connections`` connections, all kept alive (a burst of 200 streams would
otherwise reconnect 100 of them every time); the connect/pool/write timeouts are the
provider's ``connect``; the read timeout is off because the relay enforces the
time-to-first-token, idle and total timeouts itself, each with its own error.
"""

from __future__ import annotations

import httpx2
from openai import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncOpenAI,
    DefaultAsyncHttpxClient,
)

from chorus_gateway.domain.providers import ProviderConfig

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


def _status_failure(error: APIStatusError) -> UpstreamFailure:
    status = error.status_code
    kind = "status_429" if status == 429 else "status_5xx" if status >= 500 else "status_4xx"
    return UpstreamFailure(
        kind,
        f"HTTP {status}: {error.message}",
        status=status,
        body=error.response.content,
        retry_after=error.response.headers.get("retry-after"),
    )


class Upstream:
    """Sends chat completion requests to one provider."""

    def __init__(self, config: ProviderConfig, api_key: str) -> None:
        self.config = config
        self.name = config.name
        timeouts = config.timeouts
        timeout = httpx2.Timeout(
            connect=timeouts.connect, read=None, write=timeouts.connect, pool=timeouts.connect
        )
        self.http = DefaultAsyncHttpxClient(
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

    async def send(self, body: bytes, *, stream: bool) -> httpx2.Response:
        """POST ``/chat/completions``; the response (unread when ``stream``), or a failure."""
        try:
            return await self.client.post(
                "/chat/completions", cast_to=httpx2.Response, content=body, stream=stream
            )
        except APIStatusError as error:
            raise _status_failure(error) from None
        except APITimeoutError:
            raise UpstreamFailure("connect", "timed out connecting to the provider") from None
        except APIConnectionError as error:
            cause = error.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause else str(error)
            raise UpstreamFailure("connect", f"connection failed ({detail})") from None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.close()
