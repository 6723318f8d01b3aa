"""``record_llm_usage(usage)``: the gateway's per-request token usage, and daily totals.

The gateway enqueues one job per request (``usage:<request_id>``) with a dict whose keys
are the columns of ``llm_usage_events`` (a virtual key's calls also carry ``key_id``,
``team_id``; every call its ``cost_micros``). The row is keyed by ``request_id``, so a
redelivered job changes nothing; the per-(day, subject, model) totals move in the same
transaction as the row, only when the row is new. A ``user_id`` that names no user
(deleted since) is stored as NULL rather than failing the job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from chorus_common.text import unstorable
from chorus_schema.models import LlmUsageDaily, LlmUsageEvent, User
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.errors import PermanentJobError

__all__ = ["Usage", "record_llm_usage"]

#: The token columns are Postgres ``integer``s.
_INT4_MAX = 2**31 - 1


class Usage(BaseModel):
    """One request's usage, as the gateway reports it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request_id: str = Field(min_length=1, max_length=64)
    subject: str = Field(min_length=1, max_length=80)
    user_id: int | None = Field(default=None, ge=1)
    model: str = Field(min_length=1, max_length=128)
    provider: str = Field(min_length=1, max_length=64)
    prompt_tokens: int = Field(ge=0, le=_INT4_MAX)
    completion_tokens: int = Field(ge=0, le=_INT4_MAX)
    estimated: bool = False
    outcome: Literal["completed", "cut_off", "error"]
    created_at: datetime | None = None
    key_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    team_id: int | None = Field(default=None, ge=1, le=2**63 - 1)
    cost_micros: int = Field(default=0, ge=0, le=2**63 - 1)
    cached_tokens: int = Field(default=0, ge=0, le=_INT4_MAX)

    @field_validator("request_id", "subject", "model", "provider")
    @classmethod
    def _storable(cls, value: str) -> str:
        reason = unstorable(value)
        if reason is not None:
            msg = f"{reason}: Postgres cannot store it"
            raise ValueError(msg)
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


async def record_llm_usage(ctx: JobContext, usage: dict[str, Any]) -> dict[str, Any]:
    """Store one request's usage once and add it to its day's totals."""
    try:
        record = Usage.model_validate(usage)
    except ValidationError as exc:
        msg = f"usage is not valid: {exc}"
        raise PermanentJobError(msg) from exc
    created_at = record.created_at or ctx["enqueue_time"]
    day = created_at.astimezone(UTC).date()
    user_id = (
        select(User.id).where(User.id == record.user_id).scalar_subquery()
        if record.user_id is not None
        else None
    )
    async with resources(ctx).sessions.begin() as session:
        inserted = await session.scalar(
            insert(LlmUsageEvent)
            .values(
                request_id=record.request_id,
                subject=record.subject,
                user_id=user_id,
                model=record.model,
                provider=record.provider,
                prompt_tokens=record.prompt_tokens,
                completion_tokens=record.completion_tokens,
                estimated=record.estimated,
                outcome=record.outcome,
                created_at=created_at,
                key_id=record.key_id,
                team_id=record.team_id,
                cost_micros=record.cost_micros,
                cached_tokens=record.cached_tokens,
            )
            .on_conflict_do_nothing(index_elements=[LlmUsageEvent.request_id])
            .returning(LlmUsageEvent.request_id)
        )
        if inserted is None:
            return {"status": "duplicate"}
        daily = insert(LlmUsageDaily).values(
            day=day,
            subject=record.subject,
            model=record.model,
            requests=1,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cost_micros=record.cost_micros,
        )
        await session.execute(
            daily.on_conflict_do_update(
                index_elements=[LlmUsageDaily.day, LlmUsageDaily.subject, LlmUsageDaily.model],
                set_={
                    "requests": LlmUsageDaily.requests + 1,
                    "prompt_tokens": LlmUsageDaily.prompt_tokens + daily.excluded.prompt_tokens,
                    "completion_tokens": LlmUsageDaily.completion_tokens
                    + daily.excluded.completion_tokens,
                    "cost_micros": LlmUsageDaily.cost_micros + daily.excluded.cost_micros,
                },
            )
        )
    return {"status": "recorded", "day": day.isoformat()}
