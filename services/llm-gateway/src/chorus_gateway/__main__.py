"""``python -m chorus_gateway`` serves the OpenAI-compatible API."""

from __future__ import annotations

from chorus_common.server import run
from chorus_gateway.main import create_app
from chorus_gateway.settings import GatewaySettings


def main() -> None:
    """Serve until SIGTERM."""
    settings = GatewaySettings()
    run(create_app(settings), settings)


if __name__ == "__main__":
    main()
