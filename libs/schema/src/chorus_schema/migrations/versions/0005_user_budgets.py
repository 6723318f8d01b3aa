"""A user's own spend budget over all their LLM calls (set by an administrator).

Two nullable columns on ``users``, both set or both null, as a team's budget is; Postgres
adds them without rewriting the table.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 22:58:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("budget_micros", sa.BigInteger(), nullable=True))
    op.add_column("users", sa.Column("budget_period", sa.String(length=8), nullable=True))
    op.create_check_constraint(
        op.f("ck_users_budget_period_known"),
        "users",
        "budget_period IN ('day', 'month', 'total')",
    )
    op.create_check_constraint(
        op.f("ck_users_budget_complete"),
        "users",
        "(budget_micros IS NULL) = (budget_period IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_users_budget_complete"), "users", type_="check")
    op.drop_constraint(op.f("ck_users_budget_period_known"), "users", type_="check")
    op.drop_column("users", "budget_period")
    op.drop_column("users", "budget_micros")
