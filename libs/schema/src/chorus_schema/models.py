"""The SQLAlchemy models of every Chorus table (typed, SQLAlchemy 2 style).

Who writes what:

- ``users``, ``orders``, ``notifications``: the api (the worker sets ``welcome_sent_at`` and
  adds notifications such as "welcome mail sent");
- ``token_revocations``: the api, when a password changes or an account is deleted (the
  source of truth of token revocation, copied to Redis for every service to read);
- ``rooms``, ``room_members``, ``room_invitations``: the api (rooms people own, who is in
  them, who was asked in; each room's access list is copied to Redis for realtime);
- ``room_messages``: the worker's ``persist_messages`` copies room events from the Redis
  streams, exactly once thanks to the unique stream position; ``prune_room_messages``
  deletes those older than ``ROOM_MESSAGES_RETENTION_DAYS``;
- ``analytics_events`` / ``analytics_daily``: ``record_analytics`` (the raw event keyed by
  its job id makes a redelivered job a no-op; the rollup moves in the same transaction);
- ``failed_jobs``: the worker's dead letters;
- ``llm_usage_events`` / ``llm_usage_daily``: the gateway's usage, flushed by a worker job;
- ``teams``, ``team_members``, ``virtual_keys``: the api (keys are copied to Redis, where
  the gateway resolves them; only each secret's SHA-256 is stored).

Every query the services run has an index here; the migrations are generated from these.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Sequence,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "ORDER_STATUSES",
    "ROOM_ACL_VERSIONS",
    "ROOM_KINDS",
    "ROOM_ROLES",
    "ROOM_VISIBILITIES",
    "AnalyticsDaily",
    "AnalyticsEvent",
    "Base",
    "FailedJob",
    "LlmUsageDaily",
    "LlmUsageEvent",
    "Notification",
    "Order",
    "Room",
    "RoomInvitation",
    "RoomMember",
    "RoomMessage",
    "Team",
    "TeamMember",
    "TokenRevocation",
    "User",
    "VirtualKey",
]

# Deterministic constraint names, so migrations can refer to (and drop) them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ORDER_STATUSES = ("pending", "paid", "shipped", "cancelled")
ROOM_VISIBILITIES = ("public", "private")
ROOM_KINDS = ("room", "dm")
ROOM_ROLES = ("owner", "admin", "member")


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Base(DeclarativeBase):
    """Base of every model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSONB}


_PERIOD_KNOWN = "budget_period IN ('day', 'month', 'total')"


class User(Base):
    """A person who can log in. ``email`` is stored lower-cased.

    ``budget_micros`` per ``budget_period`` caps the spend of every LLM call the user makes
    (through their own virtual keys and their access token); set by an administrator.
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_PERIOD_KNOWN, name="budget_period_known"),
        CheckConstraint(
            "(budget_micros IS NULL) = (budget_period IS NULL)", name="budget_complete"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    #: Set by the worker in the transaction that records the welcome mail as sent.
    welcome_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Carried by every token issued (``ver``); raised when the password changes, which
    #: revokes every token issued before (see ``token_revocations``).
    token_version: Mapped[int] = mapped_column(Integer, server_default="1")
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str | None] = mapped_column(String(8))

    orders: Mapped[list[Order]] = relationship(
        back_populates="user",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Order.id.desc()",
    )


class TokenRevocation(Base):
    """The lowest token version an account accepts since ``revoked_at``.

    Written in the transaction that changes the password (``users.token_version``) or
    deletes the account (the version then refuses every token), and copied to Redis for
    the three services to check. No foreign key: a deleted account's revocation must
    outlive its row. Rows older than the longest token lifetime revoke nothing any more
    and are removed.
    """

    __tablename__ = "token_revocations"
    __table_args__ = (Index("ix_token_revocations_revoked_at", "revoked_at"),)

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    min_version: Mapped[int] = mapped_column(Integer)
    revoked_at: Mapped[datetime] = _now()


class Order(Base):
    """An order placed by a user."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("amount_cents >= 0", name="amount_not_negative"),
        CheckConstraint(
            "status IN ('pending', 'paid', 'shipped', 'cancelled')", name="status_known"
        ),
        # Listing a user's orders newest first, optionally by status (cursor = id).
        Index("ix_orders_user_id_id", "user_id", "id"),
        Index("ix_orders_user_id_status_id", "user_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    item: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )

    user: Mapped[User] = relationship(back_populates="orders")


class Notification(Base):
    """Something a user was told on their ``user:<id>`` channel, kept for the dashboard."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    created_at: Mapped[datetime] = _now()
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


#: Versions of room access lists: one sequence for every room, so a version taken by a
#: transaction that rolled back is still below any later one (sequences ignore rollbacks).
ROOM_ACL_VERSIONS = Sequence("room_acl_versions", metadata=Base.metadata)


class Room(Base):
    """A room someone owns (rooms that exist only by name have no row: they are public).

    ``name`` is the realtime channel's name (``room:<name>``) and never changes; it is
    compared byte by byte (collation ``C``), as Redis and realtime compare it. A direct
    message room (``kind = 'dm'``) is named ``dm.<low id>.<high id>`` and has no owner; the
    unique name makes opening it idempotent. ``acl_version`` rises with every change of
    who may enter (visibility, members, deletion), in the transaction of the change (from
    :data:`ROOM_ACL_VERSIONS`); the copy in Redis carries it, so an older copy never
    replaces a newer one. A deleted room keeps its row (``deleted_at``) so its name is never
    public again.
    """

    __tablename__ = "rooms"
    __table_args__ = (
        CheckConstraint("visibility IN ('public', 'private')", name="visibility_known"),
        CheckConstraint("kind IN ('room', 'dm')", name="kind_known"),
        # The directory of public rooms: by lower-cased name (prefix search), then name.
        Index(
            "ix_rooms_public_name",
            func.lower(text("name")),
            "name",
            postgresql_where=text("visibility = 'public' AND deleted_at IS NULL"),
        ),
        Index("ix_rooms_acl_updated_at", "acl_updated_at"),
        Index("ix_rooms_owner_id", "owner_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(64, collation="C"), unique=True)
    visibility: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(8), server_default="room")
    topic: Mapped[str | None] = mapped_column(String(200))
    owner_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    acl_version: Mapped[int] = mapped_column(
        BigInteger, server_default=ROOM_ACL_VERSIONS.next_value()
    )
    acl_updated_at: Mapped[datetime] = _now()
    created_at: Mapped[datetime] = _now()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RoomMember(Base):
    """A person in a room, with a role: ``owner`` (one per room), ``admin`` or ``member``.

    ``last_read_ms``/``last_read_seq`` is the stream position the member has read up to
    (unread counts compare it with ``room_messages``).
    """

    __tablename__ = "room_members"
    __table_args__ = (
        CheckConstraint("role IN ('owner', 'admin', 'member')", name="role_known"),
        # "My rooms": a user's memberships (the primary key serves a room's member list).
        Index("ix_room_members_user_id_room_id", "user_id", "room_id"),
    )

    room_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(8))
    joined_at: Mapped[datetime] = _now()
    last_read_ms: Mapped[int] = mapped_column(BigInteger, server_default="0")
    last_read_seq: Mapped[int] = mapped_column(BigInteger, server_default="0")


class RoomInvitation(Base):
    """An invitation into a room, waiting for its invitee to accept or decline it.

    By account (``user_id``) or by e-mail address (``email``, lower-cased, for people who
    may not have an account yet: it is theirs once they sign up or log in with it). Only
    one pending invitation per room and person.
    """

    __tablename__ = "room_invitations"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'member')", name="role_known"),
        CheckConstraint("user_id IS NOT NULL OR email IS NOT NULL", name="has_invitee"),
        UniqueConstraint("room_id", "user_id", name="uq_room_invitations_room_id_user_id"),
        UniqueConstraint("room_id", "email", name="uq_room_invitations_room_id_email"),
        Index("ix_room_invitations_user_id", "user_id"),
        Index("ix_room_invitations_email", "email"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    room_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("rooms.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE")
    )
    email: Mapped[str | None] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(8), server_default="member")
    invited_by: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _now()


class RoomMessage(Base):
    """A room event kept beyond the Redis history window (chat messages, AI answers).

    The stream id ``<ms>-<seq>`` is stored as two integers so history sorts numerically;
    the unique position makes persisting a redelivered event a no-op.
    """

    __tablename__ = "room_messages"
    __table_args__ = (
        UniqueConstraint("room", "stream_ms", "stream_seq", name="uq_room_messages_position"),
        Index("ix_room_messages_user_id", "user_id"),
        # The retention job's range scan; BRIN, since rows arrive in time order.
        Index("ix_room_messages_created_at", "created_at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    room: Mapped[str] = mapped_column(String(64))
    stream_ms: Mapped[int] = mapped_column(BigInteger)
    stream_seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    #: The envelope's ``from``: a user id or a service name (``assistant``).
    sender: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    data: Mapped[dict[str, Any]] = mapped_column()
    #: The envelope's ``ts``.
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    persisted_at: Mapped[datetime] = _now()


class AnalyticsEvent(Base):
    """One recorded analytics event, keyed by the job that recorded it (idempotency)."""

    __tablename__ = "analytics_events"
    __table_args__ = (Index("ix_analytics_events_event_occurred_at", "event", "occurred_at"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    properties: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    occurred_at: Mapped[datetime] = _now()


class AnalyticsDaily(Base):
    """Daily count per analytics event."""

    __tablename__ = "analytics_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    event: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, server_default="0")


class FailedJob(Base):
    """A dead letter: a job that failed permanently or ran out of tries."""

    __tablename__ = "failed_jobs"
    __table_args__ = (
        Index("ix_failed_jobs_job_id", "job_id"),
        Index("ix_failed_jobs_function_failed_at", "function", "failed_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(128))
    function: Mapped[str] = mapped_column(String(128))
    args: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    error: Mapped[str] = mapped_column(Text)
    tries: Mapped[int] = mapped_column(Integer)
    failed_at: Mapped[datetime] = _now()
    replayed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    replay_job_id: Mapped[str | None] = mapped_column(String(128))


class LlmUsageEvent(Base):
    """Tokens used by one gateway request (completed or cut off), keyed by its request id."""

    __tablename__ = "llm_usage_events"
    __table_args__ = (
        Index("ix_llm_usage_events_subject_created_at", "subject", "created_at"),
        # GET /api/usage: per key, per team, per user, by day.
        Index("ix_llm_usage_events_key_id_created_at", "key_id", "created_at"),
        Index("ix_llm_usage_events_team_id_created_at", "team_id", "created_at"),
        Index("ix_llm_usage_events_user_id_created_at", "user_id", "created_at"),
    )

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: Who is billed: ``user:<id>`` or ``key:<name>``.
    subject: Mapped[str] = mapped_column(String(80))
    user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    model: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(64))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    #: True when the provider sent no usage and the gateway counted tokens itself.
    estimated: Mapped[bool] = mapped_column(server_default="false")
    #: completed | cut_off | error
    outcome: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()
    #: The virtual key used, and its team (no foreign keys: usage outlives what it names).
    key_id: Mapped[int | None] = mapped_column(BigInteger)
    team_id: Mapped[int | None] = mapped_column(BigInteger)
    #: What the call cost, in micro-units of currency (0 when its model has no price).
    cost_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cached_tokens: Mapped[int] = mapped_column(Integer, server_default="0")


class LlmUsageDaily(Base):
    """Daily token totals per subject and model."""

    __tablename__ = "llm_usage_daily"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(BigInteger, server_default="0")
    cost_micros: Mapped[int] = mapped_column(BigInteger, server_default="0")


BUDGET_PERIODS = ("day", "month", "total")


class Team(Base):
    """A group of users sharing keys and, optionally, one spend budget over all of them."""

    __tablename__ = "teams"
    __table_args__ = (
        CheckConstraint(_PERIOD_KNOWN, name="budget_period_known"),
        CheckConstraint(
            "(budget_micros IS NULL) = (budget_period IS NULL)", name="budget_complete"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = _now()


class TeamMember(Base):
    """A user's membership of a team; an ``admin`` of the team manages its keys and members."""

    __tablename__ = "team_members"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'member')", name="role_known"),
        Index("ix_team_members_user_id", "user_id"),
    )

    team_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), server_default="member")
    created_at: Mapped[datetime] = _now()


class VirtualKey(Base):
    """A gateway key handed to a user or a team: its limits, budget and lifecycle.

    ``digest`` is the SHA-256 (hex) of the secret, which is shown once and never stored.
    Rotating keeps the old digest valid until ``previous_valid_until``. A revoked key
    keeps its row (usage refers to it) with ``revoked_at`` set.
    """

    __tablename__ = "virtual_keys"
    __table_args__ = (
        CheckConstraint("(user_id IS NULL) <> (team_id IS NULL)", name="one_owner"),
        CheckConstraint(_PERIOD_KNOWN, name="budget_period_known"),
        CheckConstraint(
            "(budget_micros IS NULL) = (budget_period IS NULL)", name="budget_complete"
        ),
        Index("ix_virtual_keys_user_id", "user_id"),
        Index("ix_virtual_keys_team_id", "team_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    #: The secret's first characters, to recognise it in a list.
    prefix: Mapped[str] = mapped_column(String(16))
    previous_digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE")
    )
    team_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("teams.id", ondelete="CASCADE")
    )
    created_by: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    #: Models (or aliases) the key may call; NULL for every model.
    models: Mapped[list[str] | None] = mapped_column(JSONB)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer)
    tokens_per_minute: Mapped[int | None] = mapped_column(Integer)
    concurrent_streams: Mapped[int | None] = mapped_column(Integer)
    budget_micros: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
