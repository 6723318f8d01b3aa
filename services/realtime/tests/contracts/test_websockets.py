"""websockets: the sans-I/O connection state ``transport/wsprotocol.py`` reads.

uvicorn's protocol drives a ``websockets.server.ServerProtocol`` (``conn``); we read its
``state`` to know a socket is open, and clear the handshake request's and response's
headers once accepted. websockets is pinned below its next major release in
``pyproject.toml``.
"""

from __future__ import annotations

from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol


def test_the_connection_state_we_compare_with() -> None:
    assert State.OPEN.name == "OPEN"
    assert ServerProtocol().state is State.CONNECTING


def test_handshake_headers_can_be_cleared() -> None:
    request = Request("/ws/lobby", Headers({"Host": "x", "Sec-WebSocket-Protocol": "bearer.t"}))
    request.headers.clear()
    assert list(request.headers.raw_items()) == []
