"""Virtual keys, teams, budgets and usage as clients send and see them.

Money is in integer micro-units of the gateway's price currency (1 USD = 1 000 000):
what the gateway counts, with no rounding anywhere between.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, TypedDict

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from chorus_api.schemas.fields import JSON_INTEGER, Text

__all__ = [
    "BudgetColumns",
    "BudgetIn",
    "BudgetOut",
    "BudgetPeriod",
    "BudgetSetIn",
    "KeyCreateIn",
    "KeyCreatedOut",
    "KeyOut",
    "MemberIn",
    "MemberOut",
    "RotateIn",
    "TeamCreateIn",
    "TeamDetailOut",
    "TeamOut",
    "UsageOut",
    "UsageRow",
    "UserBudgetOut",
    "budget_columns",
]

BudgetPeriod = Literal["day", "month", "total"]
#: A billion in the main unit of currency: far beyond any budget, far below bigint.
MAX_MICROS = 10**15
#: Per-key limits up to a billion a minute (0: unlimited, as in the gateway).
Limit = Annotated[int, Field(ge=0, le=10**9), JSON_INTEGER]
#: An id in a JSON body: within what a JSON number carries exactly (every client's parser).
JsonId = Annotated[int, Field(ge=1, le=2**53 - 1), JSON_INTEGER]
Name = Annotated[Text, Field(min_length=1, max_length=100)]
ModelName = Annotated[Text, Field(min_length=1, max_length=128)]


class BudgetIn(BaseModel):
    """A spend cap per calendar day or month (UTC), or in total."""

    model_config = ConfigDict(extra="forbid")

    amount_micros: Annotated[int, Field(ge=0, le=MAX_MICROS), JSON_INTEGER]
    period: BudgetPeriod


class BudgetColumns(TypedDict):
    """A budget as a key, team or user stores it: amount and period, or neither."""

    budget_micros: int | None
    budget_period: str | None


def budget_columns(budget: BudgetIn | None) -> BudgetColumns:
    """``budget`` as the columns that store it (both None: no budget)."""
    if budget is None:
        return BudgetColumns(budget_micros=None, budget_period=None)
    return BudgetColumns(budget_micros=budget.amount_micros, budget_period=budget.period)


class BudgetOut(BaseModel):
    """A budget and what the current period has spent of it."""

    amount_micros: int
    period: BudgetPeriod
    spent_micros: int | None = Field(
        default=None, description="Spent in the current period (null when not read)."
    )


class KeyCreateIn(BaseModel):
    """A new key: yours, or a team's (you must be one of its admins)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "notebook",
                    "models": ["assistant"],
                    "tokens_per_minute": 20000,
                    "budget": {"amount_micros": 5_000_000, "period": "month"},
                }
            ]
        },
    )

    name: Name
    team_id: JsonId | None = None
    models: Annotated[list[ModelName], Field(min_length=1, max_length=100)] | None = Field(
        default=None, description="Models (or aliases) it may call; omitted: every model."
    )
    requests_per_minute: Limit | None = None
    tokens_per_minute: Limit | None = None
    concurrent_streams: Limit | None = None
    budget: BudgetIn | None = None
    expires_at: AwareDatetime | None = Field(
        default=None, description="When the key stops working (with a time zone)."
    )


class KeyOut(BaseModel):
    """A key as its owner sees it: never its secret, only the secret's first characters."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str = Field(description="The secret's first characters, to recognise it.")
    user_id: int | None = Field(description="The owner, for a user's key.")
    team_id: int | None = Field(description="The owner, for a team's key.")
    models: list[str] | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    concurrent_streams: int | None
    budget: BudgetOut | None = None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_at: datetime | None
    previous_valid_until: datetime | None = Field(
        description="Until when the secret replaced by the last rotation still works."
    )
    created_at: datetime


class KeyCreatedOut(BaseModel):
    """A new (or rotated) key and its secret — shown this once, stored nowhere."""

    key: KeyOut
    secret: str = Field(description="Send as `Authorization: Bearer <secret>` to the gateway.")


class RotateIn(BaseModel):
    """How long the current secret keeps working after the rotation."""

    model_config = ConfigDict(extra="forbid")

    grace_seconds: Annotated[int, Field(ge=0, le=7 * 86_400), JSON_INTEGER] = 3600


class TeamCreateIn(BaseModel):
    """A new team; you become its admin."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "ml"}]})

    name: Name


class BudgetSetIn(BaseModel):
    """The budget to set (a team's over all its keys, a user's over all their calls); null
    removes it."""

    model_config = ConfigDict(extra="forbid")

    budget: BudgetIn | None


class UserBudgetOut(BaseModel):
    """A user's own budget over every LLM call they make (null: none)."""

    user_id: int
    budget: BudgetOut | None = None


class TeamOut(BaseModel):
    """A team."""

    id: int
    name: str
    budget: BudgetOut | None = None
    created_at: datetime


class MemberIn(BaseModel):
    """Add an account to the team (or change its role)."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[Text, Field(min_length=3, max_length=320)]
    role: Literal["admin", "member"] = "member"


class MemberOut(BaseModel):
    """A member of a team."""

    user_id: int
    email: str
    role: str


class TeamDetailOut(TeamOut):
    """A team and its members."""

    members: list[MemberOut]


class UsageRow(BaseModel):
    """One day's use of one model."""

    day: date
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int


class UsageOut(BaseModel):
    """Usage by day and model, oldest first, with totals."""

    items: list[UsageRow]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_micros: int
