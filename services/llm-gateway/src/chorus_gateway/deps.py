"""Annotated dependencies, so routes read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from chorus_gateway.domain.auth import Principal
from chorus_gateway.domain.gateway import Gateway

__all__ = ["GatewayDep", "PrincipalDep"]


def get_gateway(request: Request) -> Gateway:
    """The gateway built by the lifespan."""
    gateway: Gateway = request.app.state.gateway
    return gateway


async def get_principal(request: Request) -> Principal:
    """The authenticated caller (401 in OpenAI's shape otherwise)."""
    return await get_gateway(request).authenticate(request.headers.get("authorization"))


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
