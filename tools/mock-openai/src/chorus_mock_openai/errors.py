"""OpenAI's error envelope and the specific errors the real API returns.

Messages, types and codes are copied from what api.openai.com sends, because
SDKs and proxies branch on them (the SDK maps status codes to exception
classes; LiteLLM and the gateway inspect `code` and `retry-after`).
"""

from __future__ import annotations

import math

import orjson

from chorus_mock_openai.asgi import Headers, Send, send_json

__all__ = [
    "OpenAIError",
    "invalid_request",
    "method_not_allowed",
    "missing_api_key",
    "model_not_found",
    "rate_limited",
    "route_not_found",
    "server_error",
]

_SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


class OpenAIError(Exception):
    """An error response in OpenAI's `{"error": {...}}` shape."""

    def __init__(
        self,
        *,
        status: int,
        message: str,
        error_type: str,
        param: str | None = None,
        code: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = error_type
        self.param = param
        self.code = code
        self.headers: Headers = headers or []

    def payload(self) -> dict[str, object]:
        """The error object, as it appears inside the envelope or an SSE error event."""
        return {
            "message": self.message,
            "type": self.type,
            "param": self.param,
            "code": self.code,
        }

    def body(self) -> bytes:
        """The JSON response body."""
        return orjson.dumps({"error": self.payload()})

    async def send(self, send: Send, extra_headers: Headers | None = None) -> None:
        """Send this error as a complete HTTP response."""
        headers = [*self.headers, *(extra_headers or [])]
        await send_json(send, self.status, self.body(), headers)


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> OpenAIError:
    """A 400 `invalid_request_error`."""
    return OpenAIError(
        status=400, message=message, error_type="invalid_request_error", param=param, code=code
    )


def missing_api_key() -> OpenAIError:
    """The 401 OpenAI returns when no bearer token is sent."""
    return OpenAIError(
        status=401,
        message=(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        ),
        error_type="invalid_request_error",
    )


def model_not_found(model: str) -> OpenAIError:
    """The 404 for a model that is not in the catalogue."""
    return OpenAIError(
        status=404,
        message=f"The model `{model}` does not exist or you do not have access to it.",
        error_type="invalid_request_error",
        code="model_not_found",
    )


def route_not_found(method: str, path: str) -> OpenAIError:
    """The 404 OpenAI returns for an unknown URL."""
    return OpenAIError(
        status=404, message=f"Invalid URL ({method} {path})", error_type="invalid_request_error"
    )


def method_not_allowed(method: str, path: str) -> OpenAIError:
    """The 405 for a known URL called with the wrong method."""
    return OpenAIError(
        status=405,
        message=f"Invalid method for URL ({method} {path})",
        error_type="invalid_request_error",
    )


def server_error() -> OpenAIError:
    """OpenAI's generic 500."""
    return OpenAIError(status=500, message=_SERVER_ERROR_MESSAGE, error_type="server_error")


def rate_limited(model: str, retry_after_s: float) -> OpenAIError:
    """A 429 `rate_limit_exceeded` with the headers the SDK reads to back off."""
    whole_seconds = max(1, math.ceil(retry_after_s))
    millis = max(0, round(retry_after_s * 1000))
    return OpenAIError(
        status=429,
        message=(
            f"Rate limit reached for {model} in organization org-chorusmock on requests per "
            f"min (RPM): Limit 60, Used 60, Requested 1. Please try again in {retry_after_s:g}s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        ),
        error_type="requests",
        code="rate_limit_exceeded",
        headers=[
            (b"retry-after", b"%d" % whole_seconds),
            (b"retry-after-ms", b"%d" % millis),
            (b"x-ratelimit-limit-requests", b"60"),
            (b"x-ratelimit-remaining-requests", b"0"),
            (b"x-ratelimit-reset-requests", f"{retry_after_s:g}s".encode()),
        ],
    )
