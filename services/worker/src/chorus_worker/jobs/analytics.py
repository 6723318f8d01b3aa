"""``record_analytics(event, properties)``: durable counters in Postgres, daily rollups.

The raw event is stored under the arq job id, so a redelivered job (arq delivers at least
once) inserts nothing and, in the same transaction, counts nothing: the event row and
its day's count move together or not at all. The event's time is when it was enqueued,
not when a busy worker got to it, so a backlog never shifts counts to the next day.

Rollups are one row per (UTC day, event), upserted; every event of a kind updates the
same row, which serialises writers of that kind — comfortably thousands per second, and
the place to batch if one event type ever needs more.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from sqlalchemy.dialects.postgresql import insert

from chorus_common.text import find_unstorable
from chorus_schema.models import AnalyticsDaily, AnalyticsEvent
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.errors import PermanentJobError

__all__ = ["MAX_PROPERTIES_BYTES", "record_analytics"]

#: Event names: short identifiers such as ``user.registered`` or ``order_created``.
_EVENT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}")
MAX_PROPERTIES_BYTES: Final = 16 * 1024


def _validated(event: Any, properties: Any) -> tuple[str, dict[str, Any]]:
    if not isinstance(event, str) or not _EVENT_NAME.fullmatch(event):
        msg = f"event must be 1-64 of letters, digits, '_', '.', ':', '-': {event!r:.80}"
        raise PermanentJobError(msg)
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        msg = f"properties must be an object, not {type(properties).__name__}"
        raise PermanentJobError(msg)
    try:
        encoded = orjson.dumps(properties)
    except TypeError as exc:
        msg = f"properties must be JSON: {exc}"
        raise PermanentJobError(msg) from exc
    if len(encoded) > MAX_PROPERTIES_BYTES:
        msg = f"properties are {len(encoded)} bytes of JSON; the limit is {MAX_PROPERTIES_BYTES}"
        raise PermanentJobError(msg)
    bad = find_unstorable(properties)
    if bad is not None:
        msg = f"properties.{bad[0]} {bad[1]}: Postgres cannot store it"
        raise PermanentJobError(msg)
    decoded = orjson.loads(encoded)  # plain JSON types only, keys as strings
    assert isinstance(decoded, dict)
    return event, decoded


async def record_analytics(
    ctx: JobContext, event: str, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Record ``event`` once and count it in its day's rollup."""
    name, props = _validated(event, properties)
    occurred_at: datetime = ctx["enqueue_time"]
    day = occurred_at.astimezone(UTC).date()
    async with resources(ctx).sessions.begin() as session:
        inserted = await session.scalar(
            insert(AnalyticsEvent)
            .values(id=ctx["job_id"], event=name, properties=props, occurred_at=occurred_at)
            .on_conflict_do_nothing(index_elements=[AnalyticsEvent.id])
            .returning(AnalyticsEvent.id)
        )
        if inserted is None:
            return {"status": "duplicate"}
        upsert = insert(AnalyticsDaily).values(day=day, event=name, count=1)
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=[AnalyticsDaily.day, AnalyticsDaily.event],
                set_={"count": AnalyticsDaily.count + 1},
            )
        )
    return {"status": "recorded", "day": day.isoformat()}
