"""room_messages: a BRIN index on created_at, for the retention job.

The worker's ``prune_room_messages`` deletes rows older than the retention period in
batches (``WHERE created_at < cutoff``). Rows arrive in time order, so a BRIN index — a
few kilobytes per gigabyte of table, next to nothing to maintain on insert — finds the old
ones without reading the whole table; a B-tree would cost as much as the data it indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_room_messages_created_at",
        "room_messages",
        ["created_at"],
        unique=False,
        postgresql_using="brin",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_room_messages_created_at", table_name="room_messages", postgresql_using="brin"
    )
