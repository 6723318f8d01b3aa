"""uvicorn: the ``Server`` hooks ``chorus_common.server.DrainingServer`` overrides.

The drain runs between SIGTERM and uvicorn's own shutdown: uvicorn installs its signal
handlers in ``capture_signals`` (which a worker process, owning its signals, skips), calls
``handle_exit(sig, frame)`` on a signal, and stops once ``should_exit`` (or, for a second
signal, ``force_exit``) is set; ``startup`` runs the app's startup before serving. uvicorn
is pinned below its next minor release in ``pyproject.toml``.
"""

from __future__ import annotations

import inspect

import uvicorn


async def app(scope: object, receive: object, send: object) -> None:
    """Never called."""


def test_the_hooks_keep_their_signatures() -> None:
    for name, parameters in {
        "handle_exit": ["self", "sig", "frame"],
        "startup": ["self", "sockets"],
        "serve": ["self", "sockets"],
        "capture_signals": ["self"],
    }.items():
        assert list(inspect.signature(getattr(uvicorn.Server, name)).parameters) == parameters


def test_signals_go_through_capture_signals_to_handle_exit() -> None:
    assert "self.capture_signals()" in inspect.getsource(uvicorn.Server.serve)
    assert "self.handle_exit" in inspect.getsource(uvicorn.Server.capture_signals)


def test_the_flags_that_stop_the_server() -> None:
    server = uvicorn.Server(uvicorn.Config(app))
    assert (server.should_exit, server.force_exit) == (False, False)
    source = inspect.getsource(uvicorn.Server)
    assert "if self.should_exit" in source
    assert "self.force_exit" in source
