"""The dashboard."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from chorus_api.schemas.users import UserOut

__all__ = ["DashboardOut", "NotificationOut", "StatsOut"]


class StatsOut(BaseModel):
    """Counters: every order; the sum of non-cancelled orders; chat messages sent."""

    orders: int
    total_spent_cents: int
    messages_sent: int


class NotificationOut(BaseModel):
    """Something the user was told on their ``user:<id>`` channel."""

    id: int
    type: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


class DashboardOut(BaseModel):
    """The user, their stats and their ten latest notifications (newest first)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user": {
                        "id": 42,
                        "email": "ada@example.com",
                        "full_name": "Ada Lovelace",
                        "created_at": "2026-11-28T04:30:00Z",
                    },
                    "stats": {"orders": 3, "total_spent_cents": 19996, "messages_sent": 12},
                    "notifications": [
                        {
                            "id": 9,
                            "type": "order.created",
                            "data": {"order": {"id": 7, "item": "keyboard"}},
                            "created_at": "2026-11-28T04:31:00Z",
                            "read_at": None,
                        }
                    ],
                }
            ]
        }
    )

    user: UserOut
    stats: StatsOut
    notifications: list[NotificationOut]
