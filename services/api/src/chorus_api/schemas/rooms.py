"""Room history: stored messages as event envelopes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["MessageOut"]


class MessageOut(BaseModel):
    """A room event as realtime delivers it: ``message`` or ``ai.done``."""

    model_config = ConfigDict(
        populate_by_name=True,
        serialize_by_alias=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "1764304260000-0",
                    "channel": "room:lobby",
                    "type": "message",
                    "data": {"message": "hello"},
                    "ts": "2026-11-28T04:31:00.000Z",
                    "from": "42",
                }
            ]
        },
    )

    id: str = Field(description="Stream id <ms>-<seq>: the position in the room.")
    channel: str
    type: str
    data: dict[str, Any]
    ts: str
    from_: str = Field(alias="from", description="User id, or a service name (assistant).")
