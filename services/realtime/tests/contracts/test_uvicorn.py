"""uvicorn: the sans-I/O WebSocket protocol ``transport/wsprotocol.py`` subclasses.

``RealtimeWebSocketProtocol`` replaces the protocol's receive queue and "writable" event
with smaller stand-ins that implement only the calls uvicorn makes on them, exposes the
protocol to the app from ``handle_connect``, overrides ``receive`` and ``send``, and reads
its connection state. uvicorn is pinned below its next minor release in ``pyproject.toml``:
a release that touches any of this fails here.
"""

from __future__ import annotations

import asyncio
import inspect
import re

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

#: Calls uvicorn may make on the objects the stand-ins replace (``_Inbox``, ``_Gate``),
#: outside ``receive`` (which we override).
QUEUE_CALLS = {"put_nowait", "empty"}
WRITABLE_CALLS = {"set", "clear", "wait", "is_set"}


async def app(scope: object, receive: object, send: object) -> None:
    """Never called: the protocol is only built."""


def _source_but_receive() -> str:
    """The protocol's code, except the ``receive`` we replace."""
    return "".join(
        inspect.getsource(member)
        for name, member in vars(WebSocketsSansIOProtocol).items()
        if inspect.isfunction(member) and name != "receive"
    )


def test_the_constructor_takes_what_we_pass_on() -> None:
    assert list(inspect.signature(WebSocketsSansIOProtocol.__init__).parameters) == [
        "self",
        "config",
        "server_state",
        "app_state",
        "_loop",
    ]


def test_the_methods_we_extend_keep_their_signatures() -> None:
    for name, parameters in {
        "handle_connect": ["self", "event"],
        "receive": ["self"],
        "send": ["self", "message"],
    }.items():
        assert list(inspect.signature(getattr(WebSocketsSansIOProtocol, name)).parameters) == (
            parameters
        ), name


def test_the_queue_and_the_writable_event_are_used_only_as_the_stand_ins_allow() -> None:
    source = _source_but_receive()
    assert set(re.findall(r"self\.queue\.(\w+)", source)) <= QUEUE_CALLS
    assert set(re.findall(r"self\.writable\.(\w+)", source)) <= WRITABLE_CALLS
    # Reading is resumed by our receive(): uvicorn pauses it per message the same way.
    assert "self.read_paused = True" in source
    assert "self.transport.pause_reading()" in source


def test_handle_connect_builds_the_scope_before_the_app_sees_it() -> None:
    source = inspect.getsource(WebSocketsSansIOProtocol.handle_connect)
    assert source.index("self.scope") < source.index('"websocket.connect"')
    assert '"extensions"' in source


async def test_a_built_protocol_has_the_state_we_read() -> None:
    config = Config(app, ws="websockets-sansio", ws_per_message_deflate=False)
    config.load()
    protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    assert isinstance(protocol.queue, asyncio.Queue)
    assert isinstance(protocol.writable, asyncio.Event)
    assert config.ws_per_message_deflate is False
    for name in ("read_paused", "handshake_complete", "close_sent", "disconnected", "conn"):
        assert hasattr(protocol, name), name
    assert (protocol.handshake_complete, protocol.close_sent, protocol.disconnected) == (
        False,
        False,
        False,
    )


def test_the_asgi_event_types_exist() -> None:
    assert ASGIReceiveEvent is not None
    assert ASGISendEvent is not None
