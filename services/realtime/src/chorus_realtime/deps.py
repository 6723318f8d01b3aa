"""``Annotated`` dependencies, so routes read like prose (HTTP and WebSocket alike).

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a thread
pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from chorus_realtime.resources import Resources
from chorus_realtime.settings import RealtimeSettings

__all__ = ["ResourcesDep", "SettingsDep"]


async def _resources(connection: HTTPConnection) -> Resources:
    resources: Resources = connection.app.state.resources
    return resources


async def _settings(connection: HTTPConnection) -> RealtimeSettings:
    settings: RealtimeSettings = connection.app.state.settings
    return settings


ResourcesDep = Annotated[Resources, Depends(_resources)]
SettingsDep = Annotated[RealtimeSettings, Depends(_settings)]
