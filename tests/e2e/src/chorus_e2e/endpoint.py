"""Where clients reach the system: a public URL, and the address that really serves it.

An install answers at its own host name (``https://chorus.example.com``) with a certificate
for that name. On a test machine the name resolves nowhere, and the ingress answers on a
forwarded loopback port instead. An :class:`Endpoint` keeps the public URL everywhere a
client puts it — the ``Host`` header and the TLS server name, so the ingress routes and the
certificate is checked as in production — and only sends the bytes to ``connect_to``. With
``connect_to`` unset, it is a plain base URL.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2

__all__ = ["Endpoint", "PinnedTransport", "PinnedTransport2"]


def _pin(request: httpx.Request | httpx2.Request, address: tuple[str, int]) -> None:
    """Send ``request`` to ``address``; its URL's host stays the Host header and TLS name."""
    request.extensions["sni_hostname"] = request.url.host
    request.url = request.url.copy_with(host=address[0], port=address[1])


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends every request to one address, keeping its URL's host as Host and TLS name."""

    def __init__(self, address: tuple[str, int], verify: ssl.SSLContext | bool) -> None:
        self.address = address
        self._inner = httpx.AsyncHTTPTransport(verify=verify)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Forward ``request`` to :attr:`address`."""
        _pin(request, self.address)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._inner.aclose()


class PinnedTransport2(httpx2.AsyncBaseTransport):
    """:class:`PinnedTransport` for httpx2, the HTTP client of the openai SDK."""

    def __init__(self, address: tuple[str, int], verify: ssl.SSLContext | bool) -> None:
        self.address = address
        self._inner = httpx2.AsyncHTTPTransport(verify=verify)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Forward ``request`` to :attr:`address`."""
        _pin(request, self.address)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._inner.aclose()


@dataclass(frozen=True)
class Endpoint:
    """A public base URL and, when it is served elsewhere, where and with which CA."""

    base_url: str
    connect_to: tuple[str, int] | None = None
    ca: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What verifies the server: the given CA, else the system's."""
        if self.ca is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca))

    def transport(self) -> httpx.AsyncBaseTransport:
        """An HTTP transport to the endpoint."""
        if self.connect_to is None:
            return httpx.AsyncHTTPTransport(verify=self.ssl_context())
        return PinnedTransport(self.connect_to, self.ssl_context())

    def client(self, **options: Any) -> httpx.AsyncClient:
        """An HTTP client of the endpoint (relative URLs are under ``base_url``)."""
        return httpx.AsyncClient(
            base_url=self.base_url, transport=self.transport(), trust_env=False, **options
        )

    def openai_http_client(self, **options: Any) -> httpx2.AsyncClient:
        """The ``http_client`` of an ``openai.AsyncOpenAI`` that reaches the endpoint."""
        if self.connect_to is None:
            transport: httpx2.AsyncBaseTransport = httpx2.AsyncHTTPTransport(
                verify=self.ssl_context()
            )
        else:
            transport = PinnedTransport2(self.connect_to, self.ssl_context())
        return httpx2.AsyncClient(transport=transport, trust_env=False, **options)

    def websocket_options(self) -> dict[str, Any]:
        """Arguments of ``websockets.connect`` that reach the endpoint."""
        options: dict[str, Any] = {}
        if self.connect_to is not None:
            options["host"], options["port"] = self.connect_to
        if self.base_url.startswith("https"):
            context = self.ssl_context()
            options["ssl"] = context if isinstance(context, ssl.SSLContext) else True
        return options
