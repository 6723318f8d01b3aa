"""``GET /v1/models`` and ``GET /v1/models/{model}``: the models and aliases on offer.

OpenAI's list shape; ``owned_by`` is the (first) provider serving a model, or
``chorus`` for an alias. A key restricted to some models sees only those.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chorus_gateway.deps import GatewayDep, PrincipalDep
from chorus_gateway.domain.errors import model_not_found

__all__ = ["router"]

#: OpenAI's ``created`` is a Unix time; the catalogue has no dates, so one fixed value.
CREATED = 1_700_000_000

router = APIRouter(prefix="/v1", tags=["models"])


def _model(model_id: str, owner: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": owner}


@router.get("/models")
async def list_models(gateway: GatewayDep, principal: PrincipalDep) -> dict[str, Any]:
    """Every model and alias this caller may use."""
    rows = [
        _model(model_id, owner)
        for model_id, owner in gateway.catalog.listing()
        if principal.models is None or model_id in principal.models
    ]
    return {"object": "list", "data": rows}


@router.get("/models/{model_id:path}")
async def retrieve_model(
    model_id: str, gateway: GatewayDep, principal: PrincipalDep
) -> dict[str, Any]:
    """One model, or OpenAI's 404."""
    for listed, owner in gateway.catalog.listing():
        if listed == model_id and (principal.models is None or model_id in principal.models):
            return _model(model_id, owner)
    raise model_not_found(model_id)
