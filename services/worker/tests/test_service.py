"""The worker process: SIGTERM drains (running job finishes, none starts, exit 0); SIGKILL
loses no mail and sends none twice.

Each test runs ``python -m chorus_worker`` as a child process. The SMTP sink holds the
welcome mail's conversation (before ``RCPT TO`` is answered) so a signal provably lands
while the job runs — no sleeping and hoping.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from arq.jobs import JobStatus
from sqlalchemy import select

from chorus_devstack.servers import RunningSmtpSink
from chorus_schema.models import AnalyticsEvent

from .harness import Harness, WorkerProcess, eventually

pytestmark = pytest.mark.slow


async def _held(smtp: RunningSmtpSink) -> bool:
    return smtp.held() == 1


async def _not_ready(worker: WorkerProcess) -> bool:
    return await worker.ready_status() == 503


async def _mails(smtp: RunningSmtpSink, count: int) -> list[dict[str, object]]:
    async def arrived() -> list[dict[str, object]] | None:
        messages = smtp.messages()
        return messages if len(messages) >= count else None

    return await eventually(arrived, timeout=40, what=f"{count} mails")


async def test_sigterm_lets_the_running_job_finish_starts_no_other_and_exits_0(
    harness: Harness, smtp: RunningSmtpSink, tmp_path: Path
) -> None:
    worker = WorkerProcess(harness, tmp_path).start()
    try:
        smtp.hold("rcpt")
        user = await harness.register_user("term@example.com", "Term")
        await eventually(lambda: _held(smtp), what="the mail to be mid-conversation")

        worker.process.signal(signal.SIGTERM)

        await eventually(lambda: _not_ready(worker), what="readiness to turn 503")
        later = await harness.enqueue("record_analytics", "after.sigterm", {})
        smtp.release()
        assert await worker.exit_status() == 0, worker.log()
    finally:
        worker.process.stop()

    [mail] = smtp.messages()
    assert mail["rcpt_to"] == ["term@example.com"]
    assert (await harness.user(user.id)).welcome_sent_at is not None
    assert await harness.status(later.job_id) is JobStatus.queued  # for the next worker
    async with harness.sessions() as session:
        assert (await session.scalars(select(AnalyticsEvent))).all() == []
    assert "no new jobs" in worker.log()


async def test_a_second_sigterm_cancels_the_running_job_and_puts_it_back(
    harness: Harness, smtp: RunningSmtpSink, tmp_path: Path
) -> None:
    # Running jobs would get ten minutes and the mail stays held: only the second signal's
    # cancellation can let the process end within the test.
    worker = WorkerProcess(harness, tmp_path, JOB_COMPLETION_WAIT="600").start()
    try:
        smtp.hold("rcpt", seconds=600)
        user = await harness.register_user("twice@example.com", "Twice")
        await eventually(lambda: _held(smtp), what="the mail to be mid-conversation")

        worker.process.signal(signal.SIGTERM)

        await eventually(lambda: _not_ready(worker), what="readiness to turn 503")
        worker.process.signal(signal.SIGTERM)
        assert await worker.exit_status(timeout=30) == 0, worker.log()
    finally:
        smtp.release()
        worker.process.stop()

    assert "second signal: cancelling running jobs now" in worker.log()
    job_id = f"welcome:{user.id}"
    assert await harness.status(job_id) is JobStatus.queued  # for the next worker, unclaimed
    assert not await harness.queue.exists(f"arq:in-progress:{job_id}")
    assert smtp.messages() == []
    assert (await harness.user(user.id)).welcome_sent_at is None


async def test_a_worker_killed_mid_mail_delivers_it_once_after_restart(
    harness: Harness, smtp: RunningSmtpSink, tmp_path: Path
) -> None:
    worker = WorkerProcess(harness, tmp_path).start()
    smtp.hold("rcpt")
    user = await harness.register_user("kill@example.com", "Kill")
    await eventually(lambda: _held(smtp), what="the mail to be mid-conversation")
    worker.process.kill()
    smtp.release()  # the conversation's client is gone: nothing is delivered
    assert smtp.messages() == []

    restarted = WorkerProcess(harness, tmp_path).start()
    try:
        result = await harness.outcome(harness.job(f"welcome:{user.id}"), timeout=40)
        assert result["status"] == "sent"
        [mail] = await _mails(smtp, 1)
        assert mail["rcpt_to"] == ["kill@example.com"]
        assert (await harness.user(user.id)).welcome_sent_at is not None
    finally:
        restarted.process.signal(signal.SIGTERM)
        assert await restarted.exit_status() == 0
    assert len(smtp.messages()) == 1


async def test_a_kill_after_the_server_accepted_resends_with_the_same_message_id(
    harness: Harness, smtp: RunningSmtpSink, tmp_path: Path
) -> None:
    # The one window the job cannot close (see jobs/welcome.py): the server has the
    # message, the worker dies before hearing so. The copy it sends after the restart is
    # recognisable — it carries the same Message-ID.
    worker = WorkerProcess(harness, tmp_path).start()
    smtp.hold("data")
    user = await harness.register_user("window@example.com", "Window")
    await eventually(lambda: _held(smtp), what="the data to be sent, its reply held")
    worker.process.kill()
    smtp.release()
    await _mails(smtp, 1)

    restarted = WorkerProcess(harness, tmp_path).start()
    try:
        await harness.outcome(harness.job(f"welcome:{user.id}"), timeout=40)
        first, second = await _mails(smtp, 2)
    finally:
        restarted.process.signal(signal.SIGTERM)
        await restarted.exit_status()
    assert first["message_id"] == second["message_id"]
    assert str(first["message_id"]).startswith(f"<welcome.{user.id}.")
