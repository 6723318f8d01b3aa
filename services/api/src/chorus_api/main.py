"""The api application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware

from chorus_api import __version__
from chorus_api.domain.room_acl import AclLoadedCheck
from chorus_api.resources import open_resources
from chorus_api.routes import (
    auth,
    dashboard,
    dms,
    invitations,
    jobs,
    keys,
    members,
    orders,
    rooms,
    teams,
    usage,
    user_budgets,
    users,
)
from chorus_api.routes.apidocs import install_api_docs
from chorus_api.routes.method_not_allowed import install_method_not_allowed_handler
from chorus_api.routes.unavailable import install_unavailable_handlers
from chorus_api.routes.webclient import install_web_client
from chorus_api.settings import ApiSettings
from chorus_api.transport.body_limit import BodyLimitMiddleware
from chorus_common.app import create_service_app
from chorus_common.database import DatabaseCheck
from chorus_common.redis_client import redis_check

__all__ = ["create_app"]

TAGS = [
    {"name": "auth", "description": "Registration and OAuth2 password-flow tokens."},
    {"name": "users", "description": "Your account."},
    {"name": "orders", "description": "Your orders: CRUD, keyset pagination, lifecycle."},
    {"name": "dashboard", "description": "Home screen data in one call."},
    {
        "name": "rooms",
        "description": (
            "Rooms people own (public or private), their members and roles, invitations, "
            "direct messages, and stored history."
        ),
    },
    {"name": "jobs", "description": "Background jobs enqueued on your behalf."},
    {"name": "keys", "description": "Virtual keys for the LLM gateway, with limits and budgets."},
    {"name": "teams", "description": "Teams sharing keys and a budget."},
    {"name": "usage", "description": "LLM spend and tokens per day and model."},
]

DESCRIPTION = """\
Users, auth, orders, dashboard, rooms (members, invitations, direct messages, history)
and job status for Chorus.

Authenticate with `POST /api/auth/token` (OAuth2 password form) and send
`Authorization: Bearer <access_token>`. Errors are always
`{"error": {"code", "message", "details"?}}`. Lists are
`{"items": [...], "next_cursor": <opaque>|null}`; pass `next_cursor` back as `?cursor=`.
"""


def create_app(settings: ApiSettings) -> FastAPI:
    """Build the api; the lifespan owns the engine, the session factory, Redis and arq."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            app.state.health.add_check("postgres", DatabaseCheck(resources.engine))
            app.state.health.add_check("redis", redis_check(resources.redis))
            app.state.health.add_check("rooms", AclLoadedCheck(resources.rooms.directory))
            yield

    app = create_service_app(
        settings,
        title="Chorus API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        routers=[
            auth.router,
            users.router,
            orders.router,
            dashboard.router,
            rooms.router,
            members.router,
            invitations.router,
            dms.router,
            jobs.router,
            keys.router,
            teams.router,
            user_budgets.router,
            usage.router,
        ],
        docs_prefix="/api",
        openapi_tags=TAGS,
    )
    # Ahead of every router: a fast path answers only what its router would answer alike.
    app.router.routes[:0] = users.fast_routes
    install_api_docs(app)
    install_unavailable_handlers(app)
    install_method_not_allowed_handler(app)
    # After the routers: the page at "/" and the client's files under "/web".
    install_web_client(app)
    # Innermost of the user middleware (create_service_app's are outside it), so a 413
    # still carries X-Request-ID and is counted by the HTTP metrics.
    app.user_middleware.append(Middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes))
    return app
