"""`GET /v1/models` and `GET /v1/models/{id}`: the model catalogue."""

from __future__ import annotations

import orjson

from chorus_mock_openai.config import ANY_MODEL
from chorus_mock_openai.errors import model_not_found
from chorus_mock_openai.state import MockState

__all__ = ["MODEL_CREATED", "OWNED_BY", "model_list_body", "model_object_body"]

MODEL_CREATED = 1_700_000_000
"""The fixed `created` timestamp of every mock model."""
OWNED_BY = "chorus-mock"


def _model(model_id: str) -> dict[str, object]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": OWNED_BY}


def model_list_body(state: MockState) -> bytes:
    """The `list` of configured models (the `*` wildcard is not listed)."""
    data = [_model(model_id) for model_id in state.config.models if model_id != ANY_MODEL]
    return orjson.dumps({"object": "list", "data": data})


def model_object_body(state: MockState, model_id: str) -> bytes:
    """One model object, or OpenAIError 404 if the model is not served."""
    if not state.config.accepts_model(model_id):
        raise model_not_found(model_id)
    return orjson.dumps(_model(model_id))
