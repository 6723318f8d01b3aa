"""Settings of the realtime service."""

from __future__ import annotations

from chorus_common.settings import ServiceSettings

__all__ = ["RealtimeSettings"]


class RealtimeSettings(ServiceSettings):
    """The realtime service's settings."""

    service_name: str = "realtime"
