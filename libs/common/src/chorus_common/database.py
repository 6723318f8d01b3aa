"""The Postgres engine and session factory (async SQLAlchemy 2 on asyncpg).

Pool size, overflow, timeouts and pre-ping come from :class:`PostgresSettings`; a
statement timeout is set per connection so one runaway query cannot hold a pool slot
forever. Sessions do not expire objects on commit: responses are built after commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from chorus_common.settings import PostgresSettings

__all__ = ["DatabaseCheck", "connect_args", "create_engine", "create_sessionmaker"]


def connect_args(settings: PostgresSettings) -> dict[str, Any]:
    """What every connection is opened with besides the URL: ``asyncpg.connect`` arguments."""
    server_settings = {"application_name": settings.service_name}
    if settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    return {"timeout": settings.db_connect_timeout, "server_settings": server_settings}


def create_engine(settings: PostgresSettings) -> AsyncEngine:
    """An engine with the pool configured from settings."""
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=settings.db_pool_pre_ping,
        connect_args=connect_args(settings),
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions bound to ``engine``; one per request or task, never shared across tasks."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


class DatabaseCheck:
    """Readiness check: a pooled connection answers ``SELECT 1``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def __call__(self) -> None:
        """Raise unless Postgres answers."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
