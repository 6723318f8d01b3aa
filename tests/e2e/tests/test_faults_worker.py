"""Fault: the worker SIGKILLed in the middle of a welcome mail → exactly one mail."""

from __future__ import annotations

import httpx

from chorus_devstack.stack import Stack
from chorus_e2e.accounts import sign_up
from chorus_e2e.polling import eventually


async def test_a_worker_killed_mid_mail_sends_exactly_one_welcome_after_restart(
    stack: Stack, http: httpx.AsyncClient, ops: httpx.AsyncClient
) -> None:
    sink = stack.url("smtp-sink")
    # The worker's SMTP conversation is held at RCPT: it is mid-mail when it dies.
    await ops.post(f"{sink}/hold", json={"stage": "rcpt", "count": 1, "seconds": 60})
    try:
        user = await sign_up(http, "unlucky")
        await eventually(
            lambda: ops.get(f"{sink}/messages"),
            until=lambda r: r.json()["held"] == 1,
            what="the welcome mail in progress",
        )
        stack.processes["worker"].kill()
    finally:
        await ops.post(f"{sink}/release")
    try:
        job = await http.get(f"/api/jobs/welcome:{user.id}", headers=user.auth)
        assert job.json()["status"] == "in_progress"  # claimed by the dead worker
    finally:
        stack.start_again("worker")

    # arq redelivers once the dead worker's claim expires; the user gets one mail.
    job = await eventually(
        lambda: http.get(f"/api/jobs/welcome:{user.id}", headers=user.auth),
        until=lambda r: r.json()["status"] == "complete",
        timeout=60,
        what="the welcome job redelivered and completed",
    )
    assert job.json()["result"]["status"] == "sent"
    inbox = (await ops.get(f"{sink}/messages")).json()["items"]
    assert [m["subject"] for m in inbox if user.email in m["rcpt_to"]] == ["Welcome to Chorus"]
    dashboard = (await http.get("/api/dashboard", headers=user.auth)).json()
    assert [n["type"] for n in dashboard["notifications"]] == ["welcome.sent"]
