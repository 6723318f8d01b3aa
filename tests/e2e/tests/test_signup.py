"""Journey 1: sign up → welcome mail → analytics counted → "welcome sent" on the SSE stream."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from chorus_client import EventStreamClient
from chorus_devstack.stack import Stack
from chorus_e2e.accounts import sign_up
from chorus_e2e.polling import eventually


async def mails_to(ops: httpx.AsyncClient, stack: Stack, address: str) -> list[dict[str, Any]]:
    """Every message the SMTP sink received for ``address``."""
    inbox = (await ops.get(f"{stack.url('smtp-sink')}/messages")).json()
    return [m for m in inbox["items"] if address in m["rcpt_to"]]


async def test_sign_up_sends_one_welcome_mail_counts_it_and_notifies_the_stream(
    stack: Stack,
    ingress: str,
    http: httpx.AsyncClient,
    ops: httpx.AsyncClient,
    db: asyncpg.Connection,
) -> None:
    sink = stack.url("smtp-sink")
    # The mail waits at RCPT until the new user's app has opened its event stream, as a
    # user who signs up and lands on the app would have it open.
    await ops.post(f"{sink}/hold", json={"stage": "rcpt", "count": 1, "seconds": 20})
    try:
        user = await sign_up(http, "newcomer")
        async with EventStreamClient([ingress], user.token) as stream:
            await stream.wait_for(lambda: bool(stream.of_type("subscribed")))
            await eventually(
                lambda: ops.get(f"{sink}/messages"),
                until=lambda r: r.json()["held"] == 1,
                what="the welcome mail's SMTP conversation",
            )
            await ops.post(f"{sink}/release")
            await stream.wait_for(lambda: bool(stream.of_type("welcome.sent")), timeout=20)
    finally:
        await ops.post(f"{sink}/release")

    [notification] = stream.of_type("welcome.sent")
    assert notification["channel"] == f"user:{user.id}"
    assert stream.statuses == [200]

    [mail] = await mails_to(ops, stack, user.email)
    assert mail["subject"] == "Welcome to Chorus"
    assert user.full_name in mail["text"]

    job = await http.get(f"/api/jobs/welcome:{user.id}", headers=user.auth)
    assert job.status_code == 200
    assert job.json()["status"] == "complete"
    assert job.json()["result"]["status"] == "sent"

    # Analytics: the registration is counted once (the worker's row, keyed by job id).
    rows = await eventually(
        lambda: db.fetch(
            "SELECT id FROM analytics_events WHERE event = 'user.registered' "
            "AND properties->>'user_id' = $1",
            str(user.id),
        ),
        what="the user.registered analytics event",
    )
    assert len(rows) == 1

    dashboard = (await http.get("/api/dashboard", headers=user.auth)).json()
    assert [n["type"] for n in dashboard["notifications"]] == ["welcome.sent"]
