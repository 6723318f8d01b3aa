"""Annotated dependencies, so routes read like prose (works for HTTP and WebSocket)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from chorus_realtime.resources import Realtime
from chorus_realtime.settings import RealtimeSettings

__all__ = ["RealtimeDep", "SettingsDep"]


def _realtime(connection: HTTPConnection) -> Realtime:
    realtime: Realtime = connection.app.state.realtime
    return realtime


def _settings(connection: HTTPConnection) -> RealtimeSettings:
    settings: RealtimeSettings = connection.app.state.settings
    return settings


RealtimeDep = Annotated[Realtime, Depends(_realtime)]
SettingsDep = Annotated[RealtimeSettings, Depends(_settings)]
