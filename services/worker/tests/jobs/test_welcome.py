"""send_welcome_email: one mail per user, retries on 4xx, dead letters on 5xx, replay."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import select

from chorus_common.events import user_channel
from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningSmtpSink
from chorus_schema.models import FailedJob, Notification, User
from chorus_worker.domain.dead_letters import replay
from chorus_worker.jobs.welcome import greeting_name, send_welcome_email
from chorus_worker.resources import Resources

from ..harness import Harness, dead_lettered, eventually, metric, running_worker


async def _mails(smtp: RunningSmtpSink, count: int) -> list[dict[str, object]]:
    async def arrived() -> list[dict[str, object]] | None:
        messages = smtp.messages()
        return messages if len(messages) >= count else None

    return await eventually(arrived, what=f"{count} mails")


async def test_registering_a_user_delivers_exactly_one_welcome_mail(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    sent_before = metric("chorus_worker_emails_sent_total")
    async with running_worker(harness.settings):
        user = await harness.register_user("Ada@Example.com", "Ada <Lovelace> & co")
        result = await harness.outcome(harness.job(f"welcome:{user.id}"))
        # The api enqueues once, but arq delivers at least once: a second delivery (a new
        # job, as a replay would be) must not mail again.
        again = await harness.enqueue("send_welcome_email", user.id, _job_id="again")
        assert await harness.outcome(again) == {"status": "already_sent"}

    assert result["status"] == "sent"
    [mail] = smtp.messages()
    assert mail["rcpt_to"] == ["ada@example.com"]
    assert mail["subject"] == "Welcome to Chorus"
    assert "ada@example.com" in str(mail["to"])
    assert "Hi Ada <Lovelace> & co," in str(mail["text"])
    assert "Hi Ada &lt;Lovelace&gt; &amp; co," in str(mail["html"])
    assert harness.settings.app_url in str(mail["text"])
    assert mail["message_id"] == result["message_id"]
    assert str(mail["message_id"]).startswith(f"<welcome.{user.id}.")
    assert metric("chorus_worker_emails_sent_total") == sent_before + 1

    stored = await harness.user(user.id)
    assert stored.welcome_sent_at is not None
    async with harness.sessions() as session:
        [note] = (await session.scalars(select(Notification))).all()
    assert (note.user_id, note.type) == (user.id, "welcome.sent")
    [event] = await harness.bus.latest(user_channel(user.id), count=10)
    assert b'"type":"welcome.sent"' in event
    assert f'"notification_id":{note.id}'.encode() in event


async def test_temporary_refusals_are_retried_with_growing_delays(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    settings = harness.settings.model_copy(update={"retry_backoff_base": 0.2})
    smtp.set_mode("tempfail", count=3)
    retried_before = metric("chorus_worker_jobs_retried_total", function="send_welcome_email")
    async with running_worker(settings):
        user = await harness.register_user("grace@example.com", "Grace")
        result = await harness.outcome(harness.job(f"welcome:{user.id}"), timeout=20)

    assert result["status"] == "sent"
    refusals = smtp.refusals()
    assert [r["code"] for r in refusals] == [451, 451, 451]
    [mail] = smtp.messages()
    assert mail["rcpt_to"] == ["grace@example.com"]
    # Backoff 0.2·2^(n-1), shortened by at most 25%: no try came before its delay, and the
    # delays double (a lower bound each; a loaded machine only makes the gaps longer).
    times = [r["at"] for r in refusals]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.2 * 0.75
    assert gaps[1] >= 0.4 * 0.75
    assert [r["at"] for r in refusals] == sorted(times)
    retried = metric("chorus_worker_jobs_retried_total", function="send_welcome_email")
    assert retried == retried_before + 3


async def test_a_replay_racing_a_running_delivery_does_not_mail_twice(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    # The first delivery is mid-conversation (the server holds it before RCPT) when a second
    # run for the same user starts — a replay racing a retry. The lock makes the second wait
    # (a retry) and then find the mail sent.
    retried = metric("chorus_worker_jobs_retried_total", function="send_welcome_email")
    smtp.hold("rcpt")
    async with running_worker(harness.settings):
        user = await harness.register_user("race@example.com", "Race")
        await eventually(lambda: _true(smtp.held() == 1), what="the first delivery to be held")
        replay = await harness.enqueue("send_welcome_email", user.id, _job_id="replay:1:race")

        async def retried_once() -> bool:
            now = metric("chorus_worker_jobs_retried_total", function="send_welcome_email")
            return now >= retried + 1

        await eventually(retried_once, what="the replay to meet the lock and retry")
        assert smtp.held() == 1  # the second run never opened a conversation of its own
        smtp.release()
        first = await harness.outcome(harness.job(f"welcome:{user.id}"))
        second = await harness.outcome(replay)

    assert first["status"] == "sent"
    assert second == {"status": "already_sent"}
    [mail] = smtp.messages()
    assert mail["rcpt_to"] == ["race@example.com"]


async def test_a_permanent_refusal_is_dead_lettered_at_once_and_replayed_after_the_fix(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    smtp.set_mode("permfail")
    dead_before = metric("chorus_worker_dead_letters_total", function="send_welcome_email")
    failed_before = metric("chorus_worker_jobs_failed_total", function="send_welcome_email")
    async with running_worker(harness.settings):
        user = await harness.register_user("alan@example.com", "Alan")
        outcome = await harness.outcome(harness.job(f"welcome:{user.id}"))
        assert dead_lettered(outcome)

        async with harness.sessions() as session:
            [dead] = (await session.scalars(select(FailedJob))).all()
        assert dead.function == "send_welcome_email"
        assert dead.job_id == f"welcome:{user.id}"
        assert dead.args == {"args": [user.id], "kwargs": {}}
        assert dead.tries == 1
        assert "550" in dead.error
        assert smtp.refusals()[0]["code"] == 550
        assert len(smtp.refusals()) == 1  # no retry against a permanent refusal
        assert metric("chorus_worker_dead_letters_total", function="send_welcome_email") == (
            dead_before + 1
        )
        assert metric("chorus_worker_jobs_failed_total", function="send_welcome_email") == (
            failed_before + 1
        )
        assert (await harness.user(user.id)).welcome_sent_at is None

        smtp.set_mode("accept")  # the operator fixed the mail server
        job_id = await replay(
            harness.sessions, harness.queue, dead.id, queue_name=harness.settings.arq_queue_name
        )
        result = await harness.outcome(harness.job(job_id))

    assert result["status"] == "sent"
    [mail] = smtp.messages()
    assert mail["rcpt_to"] == ["alan@example.com"]
    async with harness.sessions() as session:
        replayed = await session.get(FailedJob, dead.id)
    assert replayed is not None
    assert replayed.replay_job_id == job_id
    assert replayed.replayed_at is not None


async def test_tries_run_out_against_a_server_that_keeps_refusing(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    settings = harness.settings.model_copy(update={"max_tries": 3, "retry_backoff_base": 0.02})
    smtp.set_mode("tempfail")
    async with running_worker(settings):
        user = await harness.register_user("kurt@example.com", "Kurt")
        outcome = await harness.outcome(harness.job(f"welcome:{user.id}"))

    assert dead_lettered(outcome)
    async with harness.sessions() as session:
        [dead] = (await session.scalars(select(FailedJob))).all()
    assert dead.tries == 3
    assert "451" in dead.error
    assert len(smtp.refusals()) == 3
    assert smtp.messages() == []


async def test_an_unreachable_server_is_a_temporary_failure(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    settings = harness.settings.model_copy(update={"smtp_port": free_port(), "max_tries": 2})
    async with running_worker(settings):
        user = await harness.register_user("nobody@example.com", "No One")
        outcome = await harness.outcome(harness.job(f"welcome:{user.id}"))
    assert dead_lettered(outcome)
    async with harness.sessions() as session:
        [dead] = (await session.scalars(select(FailedJob))).all()
    assert dead.tries == 2  # retried once: a refused connection may be a restarting server


async def test_a_send_remembered_in_redis_is_not_repeated(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    # The state a run leaves when the server accepted the mail but the database commit
    # failed: the Redis marker is set, welcome_sent_at is not.
    async with harness.sessions.begin() as session:
        user = User(email="e@example.com", full_name="E", password_hash="x")
        session.add(user)
    await harness.queue.set(f"chorus:welcome:sent:{user.id}", "<welcome.1.2@x>")
    resources = Resources.open(harness.settings, harness.queue)
    try:
        result = await send_welcome_email(harness.job_context(resources), user.id)
    finally:
        await resources.close()
    assert result["status"] == "sent"
    assert result["message_id"] == "<welcome.1.2@x>"
    assert smtp.messages() == []
    assert (await harness.user(user.id)).welcome_sent_at is not None


async def test_a_user_who_is_gone_gets_no_mail_and_bad_ids_are_dead_letters(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    async with running_worker(harness.settings):
        gone = await harness.enqueue("send_welcome_email", 4242)
        bad = await harness.enqueue("send_welcome_email", "not-a-number")
        assert await harness.outcome(gone) == {"status": "skipped", "reason": "no such user"}
        assert dead_lettered(await harness.outcome(bad))
    assert smtp.messages() == []


async def test_a_name_that_could_be_a_link_is_not_mailed_to_a_stranger(
    harness: Harness, smtp: RunningSmtpSink
) -> None:
    # Anyone can register anyone's address, naming themselves a message with a link.
    bait = "Claim your prize at http://evil.example/win"
    async with running_worker(harness.settings):
        user = await harness.register_user("victim@example.com", bait)
        result = await harness.outcome(harness.job(f"welcome:{user.id}"))
    assert result["status"] == "sent"
    [mail] = smtp.messages()
    for part in ("text", "html", "to", "subject"):
        assert "evil" not in str(mail[part]), part
        assert "prize" not in str(mail[part]), part
    assert str(mail["text"]).startswith("Hi,\r\n")
    assert "<p>Hi,</p>" in str(mail["html"])


@pytest.mark.parametrize(
    ("full_name", "greeting"),
    [
        ("Ada Lovelace", "Ada Lovelace"),
        ("J.R.R. Tolkien", "J.R.R. Tolkien"),
        ("  Grace   Hopper ", "Grace Hopper"),
        ("see evil.com", None),
        ("WWW.EVIL.ORG", None),
        ("mail me@evil.example", None),
        ("ftp://files", None),
        ("evil\u3002com", None),  # an ideographic full stop: linkified as a dot
        ("Ada\u202eevol", None),  # a right-to-left override reverses what follows
        ("x" * 65, None),
    ],
)
def test_greeting_names(full_name: str, greeting: str | None) -> None:
    assert greeting_name(full_name) == greeting


async def _true(value: bool) -> bool:
    return value
