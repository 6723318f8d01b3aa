"""``Annotated`` dependencies, so routes read like prose.

Every dependency is ``async def``: FastAPI runs a plain ``def`` dependency in a thread
pool, a thread hop per dependency per request. The completion routes are raw ASGI and
read ``scope["app"].state.resources`` themselves.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from chorus_gateway.domain.auth import Principal
from chorus_gateway.domain.gateway import Gateway
from chorus_gateway.resources import Resources
from chorus_gateway.settings import GatewaySettings

__all__ = ["GatewayDep", "PrincipalDep", "ResourcesDep", "SettingsDep"]


async def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(_resources)]


async def _gateway(resources: ResourcesDep) -> Gateway:
    return resources.gateway


async def _settings(resources: ResourcesDep) -> GatewaySettings:
    return resources.settings


async def _principal(request: Request, gateway: Annotated[Gateway, Depends(_gateway)]) -> Principal:
    """The authenticated caller (401 in OpenAI's shape otherwise)."""
    return await gateway.authenticate(request.headers.get("authorization"))


GatewayDep = Annotated[Gateway, Depends(_gateway)]
SettingsDep = Annotated[GatewaySettings, Depends(_settings)]
PrincipalDep = Annotated[Principal, Depends(_principal)]
