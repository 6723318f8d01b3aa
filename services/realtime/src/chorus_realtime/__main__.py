"""``python -m chorus_realtime`` serves WebSockets and SSE."""

from __future__ import annotations

from chorus_common.server import run
from chorus_realtime.main import create_app, server_options
from chorus_realtime.settings import RealtimeSettings


def main() -> None:
    """Serve until SIGTERM (draining connections first)."""
    settings = RealtimeSettings()
    run(create_app(settings), settings, **server_options(settings))


if __name__ == "__main__":
    main()
