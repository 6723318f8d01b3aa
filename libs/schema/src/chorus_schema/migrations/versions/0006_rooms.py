"""Rooms people own: rooms, room_members and room_invitations.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 20:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(sa.schema.CreateSequence(sa.Sequence("room_acl_versions")))
    op.create_table(
        "rooms",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=64, collation="C"), nullable=False),
        sa.Column("visibility", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=8), server_default="room", nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=True),
        sa.Column("owner_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "acl_version",
            sa.BigInteger(),
            server_default=sa.text("nextval('room_acl_versions')"),
            nullable=False,
        ),
        sa.Column(
            "acl_updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('room', 'dm')", name=op.f("ck_rooms_kind_known")),
        sa.CheckConstraint(
            "visibility IN ('public', 'private')", name=op.f("ck_rooms_visibility_known")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_rooms_owner_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rooms")),
        sa.UniqueConstraint("name", name=op.f("uq_rooms_name")),
    )
    op.create_index("ix_rooms_acl_updated_at", "rooms", ["acl_updated_at"], unique=False)
    op.create_index("ix_rooms_owner_id", "rooms", ["owner_id"], unique=False)
    op.create_index(
        "ix_rooms_public_name",
        "rooms",
        [sa.text("lower(name)"), "name"],
        unique=False,
        postgresql_where=sa.text("visibility = 'public' AND deleted_at IS NULL"),
    )
    op.create_table(
        "room_members",
        sa.Column("room_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column(
            "joined_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_read_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_read_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_room_members_role_known")
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_room_members_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_room_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("room_id", "user_id", name=op.f("pk_room_members")),
    )
    op.create_index(
        "ix_room_members_user_id_room_id", "room_members", ["user_id", "room_id"], unique=False
    )
    op.create_table(
        "room_invitations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("room_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("role", sa.String(length=8), server_default="member", nullable=False),
        sa.Column("invited_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "role IN ('admin', 'member')", name=op.f("ck_room_invitations_role_known")
        ),
        sa.CheckConstraint(
            "user_id IS NOT NULL OR email IS NOT NULL",
            name=op.f("ck_room_invitations_has_invitee"),
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["users.id"],
            name=op.f("fk_room_invitations_invited_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["room_id"],
            ["rooms.id"],
            name=op.f("fk_room_invitations_room_id_rooms"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_room_invitations_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_room_invitations")),
        sa.UniqueConstraint("room_id", "email", name="uq_room_invitations_room_id_email"),
        sa.UniqueConstraint("room_id", "user_id", name="uq_room_invitations_room_id_user_id"),
    )
    op.create_index("ix_room_invitations_email", "room_invitations", ["email"], unique=False)
    op.create_index("ix_room_invitations_user_id", "room_invitations", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_room_invitations_user_id", table_name="room_invitations")
    op.drop_index("ix_room_invitations_email", table_name="room_invitations")
    op.drop_table("room_invitations")
    op.drop_index("ix_room_members_user_id_room_id", table_name="room_members")
    op.drop_table("room_members")
    op.drop_index(
        "ix_rooms_public_name",
        table_name="rooms",
        postgresql_where=sa.text("visibility = 'public' AND deleted_at IS NULL"),
    )
    op.drop_index("ix_rooms_owner_id", table_name="rooms")
    op.drop_index("ix_rooms_acl_updated_at", table_name="rooms")
    op.drop_table("rooms")
    op.execute(sa.schema.DropSequence(sa.Sequence("room_acl_versions")))
