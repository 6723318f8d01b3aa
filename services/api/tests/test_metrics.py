"""The api's own metrics are exported under the contract's names."""

from __future__ import annotations

import re

import httpx

from .support import Account, login, unique_email


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match[1])


async def test_api_metrics(client: httpx.AsyncClient, account: Account) -> None:
    before = (await client.get("/metrics")).text
    await login(client, unique_email("ghost"), "Wrong-Horse-42", **{"X-Forwarded-For": "10.9.9.9"})
    await login(client, account.email, "Wrong-Horse-42", **{"X-Forwarded-For": "10.9.9.9"})
    await client.post(
        "/api/auth/register",
        json={"email": unique_email(), "password": "Correct-Horse-42", "full_name": "M"},
    )
    read = await client.get(f"/api/users/{account.id}", headers=account.headers)
    assert read.status_code == 200
    after = (await client.get("/metrics")).text

    for reason in ("unknown_email", "wrong_password"):
        name = f'chorus_api_login_failures_total{{reason="{reason}"}}'
        assert _value(after, name) == _value(before, name) + 1
    welcome = 'chorus_api_jobs_enqueued_total{function="send_welcome_email"}'
    assert _value(after, welcome) == _value(before, welcome) + 1
    assert 'chorus_api_login_failures_total{reason="locked_account"}' in after
    assert 'chorus_api_jobs_deduplicated_total{function="send_welcome_email"}' in after
    # Read from the pool at scrape time: nothing is checked out between requests.
    assert _value(after, "chorus_api_db_pool_in_use") == 0
    assert _value(after, "chorus_api_db_pool_overflow") == 0
    assert _value(after, "chorus_api_db_read_pool_in_use") == 0
    assert 'chorus_http_requests_total{method="POST",route="/api/auth/token",status="401"}' in after
