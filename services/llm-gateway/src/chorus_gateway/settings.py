"""Settings of the llm-gateway service."""

from __future__ import annotations

from chorus_common.settings import ServiceSettings

__all__ = ["GatewaySettings"]


class GatewaySettings(ServiceSettings):
    """The gateway's settings."""

    service_name: str = "llm-gateway"
