"""Notifications: a row for the dashboard and a live event on the user's channel.

Both the api (order changes) and the worker (welcome mail sent) tell users things the
same way: :func:`add_notification` inside the caller's transaction, then — only after that
transaction committed — :func:`publish_notification` on ``user:<id>``, so a client never
hears of something the database does not hold. The event's ``type`` is the
notification's type and its ``data`` the notification's data plus ``notification_id``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chorus_common.events import EventBus, Published, user_channel
from chorus_schema.models import Notification

__all__ = ["add_notification", "notification_event", "publish_notification"]


async def add_notification(
    session: AsyncSession, *, user_id: int, type_: str, data: dict[str, Any]
) -> Notification:
    """Add a notification in the session's transaction (flushed, so it has an id)."""
    notification = Notification(user_id=user_id, type=type_, data=data)
    session.add(notification)
    await session.flush()
    return notification


def notification_event(notification: Notification) -> dict[str, Any]:
    """The ``data`` of the live event for ``notification``."""
    return {**notification.data, "notification_id": notification.id}


async def publish_notification(
    bus: EventBus, notification: Notification, *, sender: str
) -> Published:
    """Publish a committed notification on the user's channel."""
    return await bus.publish(
        user_channel(notification.user_id),
        notification.type,
        notification_event(notification),
        sender=sender,
    )
