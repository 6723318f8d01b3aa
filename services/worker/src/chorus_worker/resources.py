"""The clients jobs use, opened once per process in ``on_startup`` and closed in ``on_shutdown``.

arq hands every job the worker's ``ctx`` dict; ours carries the settings (put there when
the worker is built) and, after startup, one :class:`Resources` holding the Postgres
engine and sessions, the Redis client arq itself uses, the event bus (on that client, or
on the cluster's when the channels live on one), the SMTP mailer and the ``openai``
client for the gateway. Jobs reach them through
:mod:`chorus_worker.deps`, which keeps the dict's ``Any`` at that edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from openai import AsyncOpenAI, Timeout
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chorus_common.database import create_engine, create_sessionmaker
from chorus_common.events import EventBus
from chorus_common.redis_client import create_channel_cluster
from chorus_worker.domain.mail import Mailer
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["RESOURCES_KEY", "SETTINGS_KEY", "JobContext", "Resources", "on_shutdown", "on_startup"]

#: What arq passes to every job and hook.
JobContext = dict[str, Any]

SETTINGS_KEY: Final = "chorus_settings"
RESOURCES_KEY: Final = "chorus_resources"
#: Seconds to open a connection to the gateway (reads use ASSISTANT_IDLE_TIMEOUT).
_GATEWAY_CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Resources:
    """Everything a job talks to."""

    settings: WorkerServiceSettings
    redis: Redis
    bus: EventBus
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    mailer: Mailer
    llm: AsyncOpenAI

    @classmethod
    def open(cls, settings: WorkerServiceSettings, redis: Redis) -> Resources:
        """Create the clients (none connects before its first use)."""
        engine = create_engine(settings)
        llm = AsyncOpenAI(
            base_url=f"{settings.llm_gateway_url}/v1",
            api_key=settings.llm_gateway_api_key.get_secret_value() or "unset",
            # The gateway retries and falls back before the first byte; a second layer of
            # retries here would only multiply the wait of the people in the room.
            max_retries=0,
            timeout=Timeout(settings.assistant_idle_timeout, connect=_GATEWAY_CONNECT_TIMEOUT),
        )
        cluster = create_channel_cluster(
            settings, client_name="chorus-worker", max_connections=settings.redis_max_connections
        )
        return cls(
            settings=settings,
            redis=redis,
            bus=EventBus.from_settings(redis if cluster is None else cluster, settings),
            engine=engine,
            sessions=create_sessionmaker(engine),
            mailer=Mailer.from_settings(settings),
            llm=llm,
        )

    async def close(self) -> None:
        """Close what :meth:`open` created (the Redis client belongs to arq)."""
        await self.llm.close()
        await self.engine.dispose()
        if self.bus.redis is not self.redis:
            await self.bus.redis.aclose()


async def on_startup(ctx: JobContext) -> None:
    """arq hook: open the clients, next to the Redis pool arq put in ``ctx['redis']``."""
    settings = ctx[SETTINGS_KEY]
    assert isinstance(settings, WorkerServiceSettings)
    ctx[RESOURCES_KEY] = Resources.open(settings, ctx["redis"])


async def on_shutdown(ctx: JobContext) -> None:
    """arq hook: close the clients."""
    found = ctx.pop(RESOURCES_KEY, None)
    if isinstance(found, Resources):
        await found.close()
