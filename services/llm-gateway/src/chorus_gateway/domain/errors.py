"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

SDKs branch on the status (the ``openai`` SDK maps 400/401/403/404/409/422/429/5xx to
exception classes and retries 408/409/429/5xx honouring ``retry-after``) and on ``code``,
so the gateway answers with the statuses, types and messages api.openai.com uses.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "GatewayError",
    "bad_gateway",
    "body_too_large",
    "gateway_timeout",
    "invalid_api_key",
    "invalid_request",
    "missing_api_key",
    "model_not_allowed",
    "model_not_found",
    "no_provider_available",
    "route_not_found",
    "service_unavailable",
]


class GatewayError(Exception):
    """An error answered to the client (as a response, or as an in-stream event)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = error_type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def payload(self) -> dict[str, Any]:
        """The inner error object."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}

    def body(self) -> bytes:
        """The JSON response body."""
        return orjson.dumps({"error": self.payload()})

    def chorus_body(self) -> bytes:
        """Chorus's own shape, ``{"error": {"code", "message"}}``, for routes outside /v1."""
        return orjson.dumps({"error": {"code": self.code or self.type, "message": self.message}})

    def sse_event(self) -> bytes:
        """The error as an SSE event, for a stream whose headers already went out."""
        return b"data: " + orjson.dumps({"error": self.payload()}) + b"\n\n"


def invalid_request(message: str, *, param: str | None = None) -> GatewayError:
    """400 ``invalid_request_error``."""
    return GatewayError(400, message, error_type="invalid_request_error", param=param)


def body_too_large(limit: int) -> GatewayError:
    """413 for a body over ``MAX_BODY_BYTES``."""
    return GatewayError(
        413,
        f"Request body too large: the limit is {limit} bytes.",
        error_type="invalid_request_error",
        code="request_too_large",
    )


def missing_api_key() -> GatewayError:
    """401 without credentials (OpenAI's words)."""
    return GatewayError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        error_type="invalid_request_error",
    )


def invalid_api_key(presented: str, reason: str = "") -> GatewayError:
    """401 for a key or token that is not valid; shows only the ends of what was sent."""
    shown = f"{presented[:3]}***{presented[-4:]}" if len(presented) > 10 else "***"
    detail = f" ({reason})" if reason else ""
    return GatewayError(
        401,
        f"Incorrect API key provided: {shown}{detail}. Use a gateway API key or a valid "
        "access token.",
        error_type="invalid_request_error",
        code="invalid_api_key",
    )


def model_not_found(model: str) -> GatewayError:
    """404 for a model that no provider serves (OpenAI's message)."""
    return GatewayError(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        error_type="invalid_request_error",
        code="model_not_found",
        param="model",
    )


def model_not_allowed(model: str) -> GatewayError:
    """403 for a model this API key may not call."""
    return GatewayError(
        403,
        f"This API key is not allowed to use the model `{model}`.",
        error_type="invalid_request_error",
        code="model_not_allowed",
        param="model",
    )


def route_not_found(method: str, path: str) -> GatewayError:
    """404 for an unknown URL under /v1 (OpenAI's message)."""
    return GatewayError(404, f"Invalid URL ({method} {path})", error_type="invalid_request_error")


def no_provider_available(model: str, retry_after: float) -> GatewayError:
    """503 when every provider of the model has its circuit open."""
    seconds = max(1, round(retry_after))
    return GatewayError(
        503,
        f"Every provider of `{model}` is failing; retry in {seconds}s.",
        error_type="server_error",
        code="provider_unavailable",
        headers={"retry-after": str(seconds)},
    )


def bad_gateway(message: str) -> GatewayError:
    """502 when the upstream failed and no fallback could serve."""
    return GatewayError(502, message, error_type="server_error", code="upstream_error")


def gateway_timeout(message: str) -> GatewayError:
    """504 when the upstream took too long (first token, idle stream, or total)."""
    return GatewayError(504, message, error_type="timeout", code="upstream_timeout")


def service_unavailable() -> GatewayError:
    """503 when Redis (limits) cannot be reached: the gateway fails closed."""
    return GatewayError(
        503,
        "The gateway cannot check rate limits right now; retry shortly.",
        error_type="server_error",
        code="service_unavailable",
        headers={"retry-after": "2"},
    )
