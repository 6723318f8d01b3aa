"""Token revocation: users.token_version and the token_revocations table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 18:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: Postgres adds the column without rewriting the table.
    op.add_column(
        "users", sa.Column("token_version", sa.Integer(), server_default="1", nullable=False)
    )
    op.create_table(
        "token_revocations",
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("min_version", sa.Integer(), nullable=False),
        sa.Column(
            "revoked_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_token_revocations")),
    )
    op.create_index(
        "ix_token_revocations_revoked_at", "token_revocations", ["revoked_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_token_revocations_revoked_at", table_name="token_revocations")
    op.drop_table("token_revocations")
    op.drop_column("users", "token_version")
