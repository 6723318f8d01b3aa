"""A notification is a row for the dashboard and an event on the user's channel."""

from __future__ import annotations

import os

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from chorus_common.events import EventBus, user_channel
from chorus_common.redis_client import create_redis
from chorus_devstack.servers import RunningPostgres, RunningRedis
from chorus_schema.migrate import upgrade
from chorus_schema.models import Notification, User
from chorus_schema.notifications import add_notification, publish_notification


async def test_row_then_event(postgres_server: RunningPostgres, redis_server: RunningRedis) -> None:
    url = postgres_server.create_database(f"notify_{os.urandom(4).hex()}")
    upgrade(url)
    engine = create_async_engine(url)
    redis = create_redis(redis_server.url, client_name="test")
    try:
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        async with sessions.begin() as session:
            user = User(
                email=f"{os.urandom(4).hex()}@example.com", full_name="A", password_hash="x"
            )
            session.add(user)
            await session.flush()
            notification = await add_notification(
                session, user_id=user.id, type_="order.created", data={"order_id": 5}
            )
        published = await publish_notification(
            EventBus(redis, history_size=1000, history_ttl=86_400), notification, sender="api"
        )
        async with sessions() as session:
            stored = (await session.execute(select(Notification))).scalars().one()
        assert stored.type == "order.created"
        [event] = await EventBus(redis, history_size=1000, history_ttl=86_400).latest(
            user_channel(user.id), count=1
        )
        assert published.payload == event
        assert b'"notification_id":' + str(stored.id).encode() in event
        assert b'"order_id":5' in event
    finally:
        await redis.aclose()
        await engine.dispose()
