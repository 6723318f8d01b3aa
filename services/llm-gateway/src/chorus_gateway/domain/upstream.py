"""One provider's client: the request the ``openai`` SDK would send, on a lean HTTP/1.1 pool.

The SDK (``openai.AsyncOpenAI``) resolves the provider's configuration — base URL, auth,
its identification headers — once; every call, streamed or not, is then sent through
:class:`~chorus_gateway.transport.http1.Http1Pool` with those headers encoded once,
skipping the SDK's per-call machinery and the general HTTP clients under it (for a
non-streamed completion those cost ~3 ms at the median in ``bench/gateway_llm.py``; for a
stream, most of the time-to-first-token budget). Bodies are relayed as they are, never
parsed into models and re-encoded. Nothing retries here: the gateway retries and falls
back itself, and only before the first byte.

Pool: ``max_connections`` connections, all kept alive (a burst of 200 streams would
otherwise reconnect 100 of them every time); connecting and waiting for a free connection
are bounded by the provider's ``connect`` timeout; there is no read timeout because the
callers enforce the time-to-first-token, idle and total timeouts themselves, each with its
own error.
"""

from __future__ import annotations

import orjson
from openai import AsyncOpenAI

from chorus_common.trace_context import trace_headers
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


class Upstream:
    """Sends chat completion requests to one provider."""

    def __init__(self, config: ProviderConfig, api_key: str) -> None:
        self.config = config
        self.name = config.name
        self.client = AsyncOpenAI(
            base_url=config.base_url,
            api_key=api_key,
            organization=None,
            project=None,
            max_retries=0,
            default_headers=config.headers or None,
        )
        # The headers the SDK computes (auth, its identification), encoded once: profiling
        # showed the SDK's per-call option copying at ~0.25 ms and the general HTTP clients
        # under it at ~0.35 ms more, most of the gateway's time-to-first-token budget.
        headers = {
            k: v
            for k, v in {**self.client.default_headers, **self.client.auth_headers}.items()
            if isinstance(v, str)
        }
        self._headers = headers
        self._pools: dict[str, Http1Pool] = {}
        self._pool_for("/chat/completions")

    def _pool_for(self, path: str) -> Http1Pool:
        """The pool of one endpoint (its request head is encoded once)."""
        pool = self._pools.get(path)
        if pool is None:
            config = self.config
            pool = self._pools[path] = Http1Pool(
                str(self.client.base_url).rstrip("/") + path,
                self._headers,
                max_connections=config.max_connections,
                connect_timeout=config.timeouts.connect,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
            )
        return pool

    async def send(self, body: bytes, path: str = "/chat/completions") -> bytes:
        """POST a non-streamed ``path``; the response's body, or a failure."""
        response = await self.send_stream(body, path)
        try:
            return await response.aread()
        finally:
            await response.aclose()

    async def send_stream(self, body: bytes, path: str = "/chat/completions") -> StreamResponse:
        """POST ``path``; the response (body unread), or a failure.

        With tracing on, the request carries the current span's ``traceparent``.
        """
        headers = trace_headers()
        extra = b""
        if headers:
            extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        try:
            response = await self._pool_for(path).post(body, extra)
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
        for pool in self._pools.values():
            await pool.aclose()
        await self.client.close()
