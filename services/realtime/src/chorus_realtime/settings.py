"""Settings of the realtime service: one field per environment variable (README lists them)."""

from __future__ import annotations

import socket
from typing import Self

from pydantic import Field, model_validator

from chorus_common.settings import (
    EventHistorySettings,
    QueueSettings,
    RedisSettings,
    ServiceSettings,
)

__all__ = ["RealtimeSettings"]


class RealtimeSettings(QueueSettings, EventHistorySettings, RedisSettings, ServiceSettings):
    """The realtime service's settings, with defaults that work on a plain cluster."""

    service_name: str = "realtime"
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="replica name (the chart sets the pod name); presence and the canary use it",
    )

    # -- WebSocket transport -----------------------------------------------------------------
    ws_ping_interval: float = Field(default=20.0, ge=0, description="protocol pings; 0 = none")
    ws_ping_timeout: float = Field(default=20.0, gt=0, description="close if no pong by then")

    # -- limits ------------------------------------------------------------------------------
    max_message_bytes: int = Field(
        default=16_384, ge=256, description="largest client frame; larger → close 1009"
    )
    messages_per_second: float = Field(
        default=20.0, gt=0, description="sustained client frames per second per connection"
    )
    message_burst: int = Field(
        default=40, ge=1, description="client frames allowed in a burst above the rate"
    )
    max_connections_per_user: int = Field(
        default=20, ge=1, description="WebSocket + SSE connections of one user, all replicas"
    )
    max_channels_per_connection: int = Field(
        default=16, ge=1, description="channels one WebSocket may subscribe to"
    )
    user_bytes_per_second: int = Field(
        default=16_384, ge=1, description="message bytes a user may send per second, all replicas"
    )
    user_bytes_burst: int = Field(
        default=262_144, ge=1, description="message bytes a user may send at once (the bucket)"
    )
    user_new_rooms_per_minute: int = Field(
        default=20, ge=1, description="rooms without history a user may open per minute"
    )

    # -- delivery ----------------------------------------------------------------------------
    send_queue_max_messages: int = Field(
        default=1000, ge=1, description="events queued for one slow client before disconnect"
    )
    send_queue_max_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="bytes queued for one client, ditto"
    )
    replay_max: int = Field(
        default=1000, ge=1, description="events replayed on resume; more → recovered false"
    )
    sse_ping_seconds: float = Field(default=15.0, gt=0, description="SSE comment pings")

    # -- presence ----------------------------------------------------------------------------
    presence_ttl: float = Field(
        default=30.0, gt=0, description="seconds a dead replica's members stay listed"
    )

    # -- rooms -------------------------------------------------------------------------------
    private_rooms: bool = Field(
        default=True,
        description=(
            "enforce rooms' access lists (private rooms, direct messages); false opens every "
            "room to everyone signed in — required with REALTIME_REDIS_CLUSTER"
        ),
    )
    room_access_recheck_seconds: float = Field(
        default=5.0,
        ge=1,
        le=60,
        description=(
            "seconds between re-checks of the access of this replica's room subscribers: the "
            "longest a missed access event could leave someone in a room"
        ),
    )

    # -- self-check --------------------------------------------------------------------------
    canary_interval: float = Field(default=5.0, gt=0, description="seconds between canaries")
    canary_timeout: float = Field(
        default=3.0, gt=0, description="a canary not back by then rebuilds pub/sub"
    )

    # -- assistant ---------------------------------------------------------------------------
    assistant_mention: str = Field(
        default="@assistant", min_length=1, description="prefix that asks the assistant"
    )
    assistant_max_pending_per_user: int = Field(
        default=3, ge=1, description="questions one user may have waiting for an answer"
    )

    @model_validator(mode="after")
    def _a_message_fits_the_bucket(self) -> Self:
        if self.user_bytes_burst < self.max_message_bytes:
            msg = "USER_BYTES_BURST must be at least MAX_MESSAGE_BYTES (or big messages never fit)"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _private_rooms_need_one_redis(self) -> Self:
        # The rule and the guarded publish are single scripts over a room's access list, the
        # "lists loaded" marker and the room's stream: on one Redis (or Sentinel group) only.
        # On a cluster those keys sit in different hash slots, so access could not be
        # enforced atomically; refuse rather than run with an open door.
        if self.private_rooms and self.cluster_seeds is not None:
            msg = (
                "private rooms are not supported with REALTIME_REDIS_CLUSTER (rooms' access "
                "lists live on the main Redis, the channels on the cluster): set "
                "PRIVATE_ROOMS=false to run every room open, or unset REALTIME_REDIS_CLUSTER"
            )
            raise ValueError(msg)
        return self
