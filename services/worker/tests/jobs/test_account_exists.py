"""send_account_exists_email: the owner of a taken address hears of a sign-up with it, once."""

from __future__ import annotations

from chorus_devstack.servers import RunningSmtpSink
from chorus_schema.models import User

from ..harness import Harness, dead_lettered, metric, running_worker


async def test_the_owner_gets_one_plain_mail_per_job(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    async with harness.sessions.begin() as session:
        user = User(
            email="owner@example.com", full_name="Owner http://evil.example", password_hash="x"
        )
        session.add(user)
    sent_before = metric("chorus_worker_emails_sent_total")
    job_id = f"account-exists:{user.id}:1"
    async with running_worker(harness.settings):
        result = await harness.outcome(
            await harness.enqueue("send_account_exists_email", user.id, _job_id=job_id)
        )
        # A redelivery of the same job (a replay, a worker killed after the send).
        again = await harness.outcome(
            await harness.enqueue("send_account_exists_email", user.id, _job_id=job_id + "x")
        )
    assert result["status"] == "sent"
    assert again["status"] == "sent"  # another job id: another hour, another mail
    mails = smtp.messages()
    assert len(mails) == 2
    mail = mails[0]
    assert mail["rcpt_to"] == ["owner@example.com"]
    assert mail["subject"] == "Someone tried to sign up with your address"
    assert harness.settings.app_url in str(mail["text"])
    # Nothing anyone typed, not even the account's own name, is in it.
    assert "evil" not in str(mail["text"])
    assert "Owner" not in str(mail["to"])
    assert metric("chorus_worker_emails_sent_total") == sent_before + 2


async def test_the_same_job_does_not_mail_twice(harness: Harness, smtp: RunningSmtpSink) -> None:
    async with harness.sessions.begin() as session:
        user = User(email="twice@example.com", full_name="T", password_hash="x")
        session.add(user)
    job_id = f"account-exists:{user.id}:7"
    await harness.queue.set(f"chorus:account-exists:sent:{job_id}", "<earlier@x>")
    async with running_worker(harness.settings):
        result = await harness.outcome(
            await harness.enqueue("send_account_exists_email", user.id, _job_id=job_id)
        )
        gone = await harness.outcome(await harness.enqueue("send_account_exists_email", 4242))
        bad = await harness.outcome(await harness.enqueue("send_account_exists_email", "x"))
    assert result == {"status": "already_sent"}
    assert gone == {"status": "skipped", "reason": "no such user"}
    assert dead_lettered(bad)
    assert smtp.messages() == []
