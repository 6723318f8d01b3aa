"""Everything the gateway holds open while it runs, opened and closed by the lifespan.

One Redis client (the limits, the accounts' token versions, the virtual keys and the arq
queue of usage jobs share its pool), the limiter and its lease renewer, the usage
recorder, one upstream client per provider, the authenticator (whose token check reads
Redis), the virtual keys' resolver and its invalidation listener, and the
:class:`~chorus_gateway.domain.gateway.Gateway` facade the routes call. What needs no
running loop — the provider configuration, the catalogue, the API keys — is read by
``create_app`` before the process serves, so a bad configuration stops it at once.
Routes reach the resources through :mod:`chorus_gateway.deps` (the raw-ASGI completion
routes, from ``scope["app"].state.resources``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from arq.connections import ArqRedis
from redis.asyncio import Redis

from chorus_common.queue import JOB_CODEC
from chorus_common.redis_client import RedisEndpoint, create_redis
from chorus_common.tokens import TokenService, TokenVerifier, TokenVersions
from chorus_gateway.domain.api_keys import ApiKeys
from chorus_gateway.domain.auth import Authenticator, Limits
from chorus_gateway.domain.call import Accounting
from chorus_gateway.domain.gateway import Gateway, GatewayOptions
from chorus_gateway.domain.limits import Limiter
from chorus_gateway.domain.providers import Catalog, ProvidersConfig
from chorus_gateway.domain.routing import ProviderPool
from chorus_gateway.domain.upstream import Upstream
from chorus_gateway.domain.usage import UsageRecorder
from chorus_gateway.domain.virtual_keys import KeyResolver
from chorus_gateway.settings import GatewaySettings

__all__ = ["Resources", "open_resources"]


@dataclass(frozen=True, slots=True)
class Resources:
    """The gateway's clients and the facade built on them."""

    settings: GatewaySettings
    redis: Redis
    gateway: Gateway


@asynccontextmanager
async def open_resources(
    settings: GatewaySettings,
    *,
    providers: ProvidersConfig,
    catalog: Catalog,
    tokens: TokenService,
    service_keys: ApiKeys,
    limits: Limits,
    api_keys: Mapping[str, str],
) -> AsyncIterator[Resources]:
    """Open the clients (none connects yet) and start the background tasks; close on exit.

    ``service_keys`` are the gateway's own API keys (``GATEWAY_API_KEYS``), ``limits`` the
    default per-caller limits; ``api_keys`` maps each provider's name to the key it is
    called with.
    """
    endpoint = RedisEndpoint.from_settings(settings)
    redis = create_redis(
        endpoint,
        client_name="chorus-gateway",
        max_connections=settings.redis_max_connections,
    )
    limiter = Limiter(redis, lease_seconds=settings.gateway_lease_seconds)
    versions = TokenVersions(redis, cache_seconds=settings.token_version_cache_seconds)
    virtual_keys = KeyResolver(
        # Its invalidation listener follows the primary behind Sentinels like every client.
        redis,
        redis_url=endpoint,
        cache_seconds=settings.gateway_key_cache_seconds,
    )
    authenticator = Authenticator(
        tokens=TokenVerifier(tokens, versions),
        api_keys=service_keys,
        defaults=limits,
        user_models=settings.user_models,
        virtual_keys=virtual_keys,
    )
    recorder = UsageRecorder(
        ArqRedis(connection_pool=redis.connection_pool, **JOB_CODEC),
        queue_name=settings.arq_queue_name,
        buffer=settings.gateway_usage_buffer,
    )
    pool = ProviderPool(
        {p.name: Upstream(p, api_keys[p.name]) for p in providers.providers},
        max_attempts=settings.gateway_max_attempts,
        breaker_failures=settings.gateway_breaker_failures,
        breaker_cooldown=settings.gateway_breaker_cooldown_seconds,
    )
    gateway = Gateway(
        catalog=catalog,
        authenticator=authenticator,
        limiter=limiter,
        pool=pool,
        accounting=Accounting(limiter, recorder),
        options=GatewayOptions(
            default_max_tokens=settings.gateway_default_max_tokens,
            keepalive_seconds=settings.gateway_keepalive_seconds,
        ),
    )
    limiter.start()
    recorder.start()
    virtual_keys.start()
    try:
        yield Resources(settings=settings, redis=redis, gateway=gateway)
    finally:
        await virtual_keys.stop()
        await limiter.stop()
        await recorder.stop()
        await pool.aclose()
        await redis.aclose()
