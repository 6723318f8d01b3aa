"""The virtual-key contract between the api and the gateway: records and spend counters."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chorus_common.virtual_keys import (
    Budget,
    KeyRecord,
    is_virtual_key,
    new_secret,
    secret_digest,
    spend_counter,
)


def test_a_record_survives_its_redis_form() -> None:
    record = KeyRecord(
        id=7,
        name="k",
        owner="team:3",
        user_id=None,
        team_id=3,
        models=("assistant",),
        tokens_per_minute=100,
        expires_at=1.5e9,
        budgets=(Budget("vkey:7", 10, "day"), Budget("team:3", 99, "total")),
    )
    assert KeyRecord.from_json(record.to_json()) == record


@pytest.mark.parametrize(
    "raw",
    ['{"id": "7"}', '{"id": 7, "name": "k", "owner": "user:1", "budgets": [{"period": "week"}]}'],
)
def test_a_malformed_record_is_an_error_not_a_key(raw: str) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        KeyRecord.from_json(raw)


def test_secrets_are_long_random_and_never_a_jwt() -> None:
    one, two = new_secret(), new_secret()
    assert one != two
    assert is_virtual_key(one)
    assert "." not in one
    assert len(one) > 50
    assert len(secret_digest(one)) == 64


def test_spend_counters_follow_utc_days_and_months() -> None:
    budget = Budget("vkey:1", 1, "day")
    key, ttl_ms, left_s = spend_counter("user:1", budget, datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert key == "chorus:gw:spend:{user:1}:vkey:1:d20261231"
    assert left_s == 3600
    assert ttl_ms == 3600_000 + 86_400_000  # the period, and a day to settle late calls
    month = Budget("vkey:1", 1, "month")
    key, _, left_s = spend_counter("user:1", month, datetime(2026, 12, 31, 23, 0, tzinfo=UTC))
    assert key.endswith(":m202612")
    assert left_s == 3600  # December ends into the next year
    total = Budget("team:2", 1, "total")
    assert spend_counter("team:2", total, datetime(2026, 1, 1, tzinfo=UTC)) == (
        "chorus:gw:spend:{team:2}:team:2:total",
        0,
        0,
    )
