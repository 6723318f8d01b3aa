"""Virtual keys and teams; the cost and key of each LLM call in the usage tables.

``virtual_keys`` holds only each secret's SHA-256 (and the previous one during a rotation's
grace period). ``llm_usage_events`` gains the key, its team, the cached prompt tokens and
the cost in micro-units of currency, with the indexes ``GET /api/usage`` reads by; the
daily totals gain the cost. Every new column is nullable or has a constant default, so
Postgres adds them without rewriting the tables.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 21:45:06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("budget_micros", sa.BigInteger(), nullable=True),
        sa.Column("budget_period", sa.String(length=8), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "budget_period IN ('day', 'month', 'total')", name=op.f("ck_teams_budget_period_known")
        ),
        sa.CheckConstraint(
            "(budget_micros IS NULL) = (budget_period IS NULL)",
            name=op.f("ck_teams_budget_complete"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_teams")),
        sa.UniqueConstraint("name", name=op.f("uq_teams_name")),
    )
    op.create_table(
        "team_members",
        sa.Column("team_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), server_default="member", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('admin', 'member')", name=op.f("ck_team_members_role_known")),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_team_members_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_team_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("team_id", "user_id", name=op.f("pk_team_members")),
    )
    op.create_index("ix_team_members_user_id", "team_members", ["user_id"], unique=False)
    op.create_table(
        "virtual_keys",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("previous_digest", sa.String(length=64), nullable=True),
        sa.Column("previous_valid_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("team_id", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("models", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=True),
        sa.Column("tokens_per_minute", sa.Integer(), nullable=True),
        sa.Column("concurrent_streams", sa.Integer(), nullable=True),
        sa.Column("budget_micros", sa.BigInteger(), nullable=True),
        sa.Column("budget_period", sa.String(length=8), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "budget_period IN ('day', 'month', 'total')",
            name=op.f("ck_virtual_keys_budget_period_known"),
        ),
        sa.CheckConstraint(
            "(budget_micros IS NULL) = (budget_period IS NULL)",
            name=op.f("ck_virtual_keys_budget_complete"),
        ),
        sa.CheckConstraint(
            "(user_id IS NULL) <> (team_id IS NULL)", name=op.f("ck_virtual_keys_one_owner")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_virtual_keys_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_virtual_keys_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_virtual_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_virtual_keys")),
        sa.UniqueConstraint("digest", name=op.f("uq_virtual_keys_digest")),
        sa.UniqueConstraint("previous_digest", name=op.f("uq_virtual_keys_previous_digest")),
    )
    op.create_index("ix_virtual_keys_team_id", "virtual_keys", ["team_id"], unique=False)
    op.create_index("ix_virtual_keys_user_id", "virtual_keys", ["user_id"], unique=False)
    op.add_column(
        "llm_usage_daily",
        sa.Column("cost_micros", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column("llm_usage_events", sa.Column("key_id", sa.BigInteger(), nullable=True))
    op.add_column("llm_usage_events", sa.Column("team_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "llm_usage_events",
        sa.Column("cost_micros", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "llm_usage_events",
        sa.Column("cached_tokens", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index(
        "ix_llm_usage_events_key_id_created_at",
        "llm_usage_events",
        ["key_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_llm_usage_events_team_id_created_at",
        "llm_usage_events",
        ["team_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_llm_usage_events_user_id_created_at",
        "llm_usage_events",
        ["user_id", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_llm_usage_events_user_id_created_at", table_name="llm_usage_events")
    op.drop_index("ix_llm_usage_events_team_id_created_at", table_name="llm_usage_events")
    op.drop_index("ix_llm_usage_events_key_id_created_at", table_name="llm_usage_events")
    op.drop_column("llm_usage_events", "cached_tokens")
    op.drop_column("llm_usage_events", "cost_micros")
    op.drop_column("llm_usage_events", "team_id")
    op.drop_column("llm_usage_events", "key_id")
    op.drop_column("llm_usage_daily", "cost_micros")
    op.drop_index("ix_virtual_keys_user_id", table_name="virtual_keys")
    op.drop_index("ix_virtual_keys_team_id", table_name="virtual_keys")
    op.drop_table("virtual_keys")
    op.drop_index("ix_team_members_user_id", table_name="team_members")
    op.drop_table("team_members")
    op.drop_table("teams")
