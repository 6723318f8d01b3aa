"""Rooms, their members, invitations, direct messages, and stored history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from chorus_api.schemas.fields import BIGINT_MAX, JSON_INTEGER, Text
from chorus_api.schemas.users import Email
from chorus_common.rooms import DM_PREFIX

__all__ = [
    "ROOM_PATTERN",
    "STREAM_ID_PATTERN",
    "DmOpenIn",
    "DmOut",
    "InvitationIn",
    "InvitationOut",
    "MemberOut",
    "MessageOut",
    "ProfileOut",
    "ReadIn",
    "RoleIn",
    "RoomCreateIn",
    "RoomOut",
    "RoomUpdateIn",
]

#: The same rule as chorus_common.events.room_channel.
ROOM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
STREAM_ID_PATTERN = r"^\d{1,19}-\d{1,19}$"


def _not_reserved(name: str) -> str:
    if name.startswith(DM_PREFIX):
        msg = f"names starting with {DM_PREFIX!r} are direct-message rooms"
        raise ValueError(msg)
    return name


RoomName = Annotated[
    str,
    Field(pattern=ROOM_PATTERN, description="1-64 of A-Z a-z 0-9 _ . - (first: letter or digit)."),
]
NewRoomName = Annotated[RoomName, AfterValidator(_not_reserved)]
Visibility = Literal["public", "private"]
Role = Literal["owner", "admin", "member"]
Topic = Annotated[Text, Field(max_length=200)]
UserId = Annotated[int, Field(ge=1, le=BIGINT_MAX), JSON_INTEGER]


class ProfileOut(BaseModel):
    """A person as everyone signed in may see them: an id and a display name, no e-mail."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"id": 42, "display_name": "Ada"}]})

    id: int
    display_name: str


class RoomCreateIn(BaseModel):
    """A new room; you become its owner."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "design-team", "visibility": "private", "topic": "Pixels"}]
        },
    )

    name: NewRoomName
    visibility: Visibility = "public"
    topic: Topic | None = None


class RoomUpdateIn(BaseModel):
    """Changes (owner or admin): ``visibility``, ``topic`` (``null`` clears it)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"visibility": "private"}]}
    )

    visibility: Visibility | None = None
    topic: Topic | None = None


class RoomOut(BaseModel):
    """A room as you see it: ``role`` is yours (null: you are not a member)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "design-team",
                    "kind": "room",
                    "visibility": "private",
                    "topic": "Pixels",
                    "owner": {"id": 42, "display_name": "Ada"},
                    "role": "owner",
                    "member_count": 3,
                    "created_at": "2026-12-08T20:00:00.000000Z",
                }
            ]
        }
    )

    name: str
    kind: Literal["room", "dm"]
    visibility: Visibility
    topic: str | None
    owner: ProfileOut | None
    role: Role | None
    member_count: int
    created_at: datetime


class MemberOut(BaseModel):
    """A member of a room."""

    user_id: int
    display_name: str
    role: Role
    joined_at: datetime


class RoleIn(BaseModel):
    """A member's new role (owner only); ``owner`` hands the room over (you become admin)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "admin"}]})

    role: Role


class InvitationIn(BaseModel):
    """Whom to invite: an account (``user_id``) or an e-mail address, and the role offered."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"email": "grace@example.com", "role": "member"}, {"user_id": 7}]
        },
    )

    email: Email | None = None
    user_id: UserId | None = None
    role: Literal["admin", "member"] = "member"

    @model_validator(mode="after")
    def _one_invitee(self) -> Self:
        if (self.email is None) == (self.user_id is None):
            msg = "give exactly one of email and user_id"
            raise ValueError(msg)
        return self


class InvitationOut(BaseModel):
    """A pending invitation: ``email`` for one by address, ``user`` for one by account."""

    id: int
    room: str
    visibility: Visibility
    role: Literal["admin", "member"]
    email: str | None
    user: ProfileOut | None
    inviter: str | None = Field(description="The inviter's display name.")
    created_at: datetime


class DmOpenIn(BaseModel):
    """Whom to talk to."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user_id": 7}]})

    user_id: UserId


class DmOut(BaseModel):
    """A direct-message conversation: its room, the other person, what you have not read."""

    room: str
    peer: ProfileOut | None = Field(description="Null once the other account was deleted.")
    unread: int = Field(description="Their messages after your read mark (counted up to 100).")
    last_message_at: datetime | None


class ReadIn(BaseModel):
    """The stream id of the newest message you have seen."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"id": "1764304260000-0"}]}
    )

    id: Annotated[str, Field(pattern=STREAM_ID_PATTERN)]


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
                    "data": {"message": "hello", "name": "Ada"},
                    "ts": "2026-11-28T04:31:00.000Z",
                    "from": "42",
                }
            ]
        },
    )

    id: str = Field(description="Stream id <ms>-<seq>: the position in the room.")
    channel: str
    type: str
    data: dict[str, Any] = Field(
        description="The event's data; messages carry the sender's display name in `name`."
    )
    ts: str
    from_: str = Field(alias="from", description="User id, or a service name (assistant).")
