"""Settings of the llm-gateway service (environment variables, one name each).

Besides the common ones (``chorus_common.settings``): ``LLM_PROVIDERS`` (JSON, or a path
to a mounted YAML/JSON file; see ``domain.providers``), ``GATEWAY_API_KEYS`` (service
keys; see ``domain.api_keys``), the default per-subject limits, and the knobs of fallback,
circuit breaking, keep-alives and usage accounting. Every default works on a plain cluster.
"""

from __future__ import annotations

from pydantic import Field, SecretStr

from chorus_common.settings import (
    BodyLimitSettings,
    QueueSettings,
    RedisSettings,
    ServiceSettings,
    body_limit_field,
)

__all__ = ["GatewaySettings"]


class GatewaySettings(QueueSettings, BodyLimitSettings, RedisSettings, ServiceSettings):
    """The gateway's settings."""

    service_name: str = "llm-gateway"

    llm_providers: str = Field(
        default="",
        description="Providers and aliases: JSON, or a path to a YAML/JSON file.",
    )
    gateway_api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="Service API keys: comma-separated name:key, or a JSON list of objects.",
    )

    # Default limits per subject (a user, or an API key without its own); 0 = unlimited.
    gateway_requests_per_minute: int = Field(default=600, ge=0)
    gateway_tokens_per_minute: int = Field(default=200_000, ge=0)
    gateway_concurrent_streams: int = Field(default=20, ge=0)
    gateway_default_max_tokens: int = Field(
        default=4096,
        ge=1,
        description="Completion cap reserved (and sent upstream) when a request sets none.",
    )
    gateway_lease_seconds: float = Field(
        default=30.0,
        ge=3,
        description="A concurrency slot's lease; renewed while the request runs.",
    )

    gateway_max_attempts: int = Field(
        default=3, ge=1, le=10, description="Upstream attempts per request, fallbacks included."
    )
    gateway_breaker_failures: int = Field(
        default=5, ge=1, description="Consecutive failures that open a provider's circuit."
    )
    gateway_breaker_cooldown_seconds: float = Field(default=30.0, gt=0)
    gateway_keepalive_seconds: float = Field(
        default=5.0, gt=0, description="SSE keep-alive comment interval before the first token."
    )
    #: MAX_BODY_BYTES: prompts with long conversations are large; 8 MiB here.
    max_body_bytes: int = body_limit_field(8 * 1024 * 1024)
    gateway_playground_model: str = Field(
        default="assistant", description="Model (or alias) answering POST /chat/stream."
    )
    gateway_user_models: str = Field(
        default="assistant",
        description="Models (or aliases) users may call, comma-separated; * for all of them. "
        "Service keys may call every model unless their entry lists its own.",
    )

    @property
    def user_models(self) -> frozenset[str] | None:
        """``GATEWAY_USER_MODELS`` as a set; None when users may call every model."""
        names = {name.strip() for name in self.gateway_user_models.split(",") if name.strip()}
        return None if "*" in names else frozenset(names)

    gateway_key_cache_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a replica trusts a virtual key it read from Redis when no "
        "invalidation reached it (revocations are published and apply within a second).",
    )

    gateway_usage_buffer: int = Field(
        default=10_000, ge=1, description="Usage records held while Redis is slow or away."
    )
