"""``prune_room_messages()``: room history older than ``ROOM_MESSAGES_RETENTION_DAYS`` goes.

A cron job (every ten minutes). ``room_messages`` otherwise grows for as long as people
talk; with a retention period set, each run deletes the rows whose event time
(``created_at``, the envelope's ``ts``) is older than the period, ``RETENTION_BATCH`` rows
per statement and transaction — short locks, no long-running delete competing with
``persist_messages`` — until none is left or ``RETENTION_MAX_BATCHES`` statements ran (the
next run goes on). The rows are found through a BRIN index on ``created_at``.

``ROOM_MESSAGES_RETENTION_DAYS=0`` keeps history forever. Deleted rows are counted in
``chorus_worker_room_messages_pruned_total``; Redis keeps its own, shorter history
(``HISTORY_SIZE``/``HISTORY_TTL``) regardless.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from chorus_schema.models import RoomMessage
from chorus_worker.deps import JobContext, resources
from chorus_worker.metrics import ROOM_MESSAGES_PRUNED

__all__ = ["prune_room_messages"]

logger = logging.getLogger("chorus.worker.retention")


async def prune_room_messages(ctx: JobContext) -> dict[str, Any]:
    """Delete room history older than the retention period, in batches."""
    found = resources(ctx)
    settings = found.settings
    if settings.room_messages_retention_days == 0:
        return {"status": "disabled", "deleted": 0}
    cutoff = datetime.now(UTC) - timedelta(days=settings.room_messages_retention_days)
    deleted = 0
    for _ in range(settings.retention_max_batches):
        oldest = (
            select(RoomMessage.id)
            .where(RoomMessage.created_at < cutoff)
            .limit(settings.retention_batch)
            .scalar_subquery()
        )
        async with found.sessions.begin() as session:
            result = await session.execute(
                delete(RoomMessage).where(RoomMessage.id.in_(oldest)).returning(RoomMessage.id)
            )
            batch = len(result.all())
        deleted += batch
        ROOM_MESSAGES_PRUNED.inc(batch)
        if batch < settings.retention_batch:
            break
    if deleted:
        logger.info("pruned %d room messages older than %s", deleted, cutoff.isoformat())
    return {"status": "ok", "deleted": deleted, "before": cutoff.isoformat()}
