"""Settings of the api service (environment variables; see DESIGN.md for shared names)."""

from __future__ import annotations

from chorus_common.settings import DatabaseSettings

__all__ = ["ApiSettings"]


class ApiSettings(DatabaseSettings):
    """The api's settings: the common ones plus Postgres."""

    service_name: str = "api"
