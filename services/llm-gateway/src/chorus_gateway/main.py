"""The llm-gateway application factory.

``create_app`` reads the provider and API-key configuration at once (a bad
``LLM_PROVIDERS`` stops the process before it serves); the lifespan opens what needs a
running loop (``resources``) and closes it in reverse order. The completion endpoints
are raw ASGI routes, reached through ``transport.fast_path`` past FastAPI's layers;
``/v1/models`` is FastAPI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp

from chorus_common.app import create_service_app
from chorus_common.redis_client import redis_check
from chorus_common.tokens import TokenService
from chorus_gateway import __version__
from chorus_gateway.domain.api_keys import ApiKeys, parse_api_keys
from chorus_gateway.domain.auth import Limits
from chorus_gateway.domain.chat_request import (
    parse_completions_request,
    parse_embeddings_request,
    parse_responses_request,
)
from chorus_gateway.domain.providers import Catalog, load_providers, resolve_api_key
from chorus_gateway.metrics import declare_series
from chorus_gateway.resources import open_resources
from chorus_gateway.routes import models
from chorus_gateway.routes.chat_completions import ChatCompletions
from chorus_gateway.routes.chat_stream import ChatStream
from chorus_gateway.routes.openai_errors import install_openai_errors
from chorus_gateway.settings import GatewaySettings
from chorus_gateway.transport.fast_path import FastPath

__all__ = ["create_app"]

logger = logging.getLogger("chorus.gateway")


def create_app(settings: GatewaySettings, *, environ: Mapping[str, str] | None = None) -> FastAPI:
    """Build the llm-gateway; ``environ`` resolves providers' ``api_key_env`` (os.environ)."""
    env = os.environ if environ is None else environ
    config = load_providers(settings.llm_providers)
    catalog = Catalog(config)
    declare_series(catalog.served())
    service_keys = ApiKeys(parse_api_keys(settings.gateway_api_keys.get_secret_value()))
    keys = {p.name: resolve_api_key(p, env) for p in config.providers}
    user_models = settings.user_models
    if user_models is not None:
        unknown = sorted(m for m in user_models if catalog.resolve(m) is None)
        if unknown:
            # Safe, if surprising: users simply cannot call what does not exist.
            logger.warning(
                "GATEWAY_USER_MODELS names models no provider serves: %s", ", ".join(unknown)
            )
    unpriced = catalog.unpriced()
    if unpriced:
        # Budgets cannot count what has no price: such calls cost nothing against them.
        logger.warning(
            "models served without a price (free against budgets): %s", ", ".join(unpriced)
        )
    tokens = TokenService(secret=settings.jwt_secret.get_secret_value(), issuer=settings.jwt_issuer)
    defaults = Limits(
        requests_per_minute=settings.gateway_requests_per_minute,
        tokens_per_minute=settings.gateway_tokens_per_minute,
        concurrent_streams=settings.gateway_concurrent_streams,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not config.providers:
            logger.warning(
                "LLM_PROVIDERS lists no provider: no model is served "
                "(every request answers 404 model_not_found) until one is configured"
            )
        async with open_resources(
            settings,
            providers=config,
            catalog=catalog,
            tokens=tokens,
            service_keys=service_keys,
            limits=defaults,
            api_keys=keys,
        ) as resources:
            app.state.resources = resources
            app.state.health.add_check("redis", redis_check(resources.redis))
            yield

    app = create_service_app(
        settings,
        title="Chorus LLM gateway",
        version=__version__,
        description="OpenAI-compatible streaming proxy with fallback, cancellation and limits.",
        lifespan=lifespan,
        routers=[models.router],
    )
    install_openai_errors(app)
    body_limit = settings.max_body_bytes
    completions = [
        Route(
            "/v1/chat/completions",
            ChatCompletions(max_body_bytes=body_limit),
            methods=["POST"],
            name="chat_completions",
        ),
        Route(
            "/v1/completions",
            ChatCompletions(max_body_bytes=body_limit, parse=parse_completions_request),
            methods=["POST"],
            name="completions",
        ),
        Route(
            "/v1/embeddings",
            ChatCompletions(max_body_bytes=body_limit, parse=parse_embeddings_request),
            methods=["POST"],
            name="embeddings",
        ),
        Route(
            "/v1/responses",
            ChatCompletions(
                max_body_bytes=body_limit, parse=parse_responses_request, responses_stream=True
            ),
            methods=["POST"],
            name="responses",
        ),
        Route(
            "/chat/stream",
            ChatStream(max_body_bytes=body_limit, model=settings.gateway_playground_model),
            methods=["POST"],
            name="chat_stream",
        ),
    ]
    app.router.routes.extend(completions)
    build_stack = app.build_middleware_stack

    def build_with_fast_path() -> ASGIApp:
        return FastPath(build_stack(), completions, access_log=settings.access_log)

    app.build_middleware_stack = build_with_fast_path  # type: ignore[method-assign]
    return app
