"""The SMTP sink keeps what it receives and can refuse on demand."""

from __future__ import annotations

import smtplib
import threading
import time
from email.message import EmailMessage

import httpx
import pytest

from chorus_devstack.servers import RunningSmtpSink


def _send(sink: RunningSmtpSink, to: str, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "Chorus <no-reply@chorus.localhost>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("plain body")
    message.add_alternative("<p>html body</p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", sink.smtp_port, timeout=5) as client:
        client.send_message(message)


def test_messages_are_kept_and_parsed(smtp_sink: RunningSmtpSink) -> None:
    smtp_sink.clear()
    _send(smtp_sink, "ada@example.com", "Welcome")
    [message] = smtp_sink.messages()
    assert message["rcpt_to"] == ["ada@example.com"]
    assert message["subject"] == "Welcome"
    assert message["text"].strip() == "plain body"
    assert "<p>html body</p>" in message["html"]


def test_temporary_then_permanent_refusals(smtp_sink: RunningSmtpSink) -> None:
    smtp_sink.clear()
    smtp_sink.set_mode("tempfail", count=1)
    with pytest.raises(smtplib.SMTPDataError) as temporary:
        _send(smtp_sink, "a@example.com", "one")
    assert temporary.value.smtp_code == 451
    _send(smtp_sink, "a@example.com", "two")  # the count ran out: accepted again
    smtp_sink.set_mode("permfail")
    with pytest.raises(smtplib.SMTPDataError) as permanent:
        _send(smtp_sink, "a@example.com", "three")
    assert permanent.value.smtp_code == 550
    smtp_sink.set_mode("accept")
    assert [m["subject"] for m in smtp_sink.messages()] == ["two"]


def test_refusals_carry_their_time(smtp_sink: RunningSmtpSink) -> None:
    smtp_sink.clear()
    smtp_sink.set_mode("tempfail", count=2)
    before = time.time()
    for subject in ("one", "two"):
        with pytest.raises(smtplib.SMTPDataError):
            _send(smtp_sink, "a@example.com", subject)
    refusals = smtp_sink.refusals()
    assert [r["code"] for r in refusals] == [451, 451]
    assert before <= refusals[0]["at"] <= refusals[1]["at"] <= time.time()
    smtp_sink.clear()
    assert smtp_sink.refusals() == []


def _wait_held(sink: RunningSmtpSink, count: int) -> None:
    deadline = time.monotonic() + 10
    while sink.held() != count:
        assert time.monotonic() < deadline, "the sink never held the conversation"
        time.sleep(0.01)


@pytest.mark.parametrize("stage", ["rcpt", "data"])
def test_hold_stops_a_conversation_until_released(smtp_sink: RunningSmtpSink, stage: str) -> None:
    smtp_sink.clear()
    smtp_sink.hold(stage, count=1)
    sender = threading.Thread(target=_send, args=(smtp_sink, "held@example.com", "held"))
    sender.start()
    try:
        _wait_held(smtp_sink, 1)
        # Held before RCPT is answered: nothing stored; held after DATA: stored, unanswered.
        assert len(smtp_sink.messages()) == (1 if stage == "data" else 0)
        assert sender.is_alive()
    finally:
        smtp_sink.release()
        sender.join(10)
    assert not sender.is_alive()
    assert [m["subject"] for m in smtp_sink.messages()] == ["held"]
    _send(smtp_sink, "next@example.com", "not held")  # count 1: the next one goes through
    assert smtp_sink.held() == 0
    assert len(smtp_sink.messages()) == 2


def test_a_message_held_after_its_data_is_kept_when_the_client_vanishes(
    smtp_sink: RunningSmtpSink,
) -> None:
    smtp_sink.clear()
    smtp_sink.hold("data", count=1)
    message = EmailMessage()
    message["From"] = "a@example.com"
    message["To"] = "b@example.com"
    message["Subject"] = "lost reply"
    message.set_content("body")
    client = smtplib.SMTP("127.0.0.1", smtp_sink.smtp_port, timeout=5)
    client.ehlo()
    client.mail("a@example.com")
    client.rcpt("b@example.com")
    # Send DATA by hand and hang up without waiting for the reply (a client that crashed).
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(message.as_bytes().replace(b"\n", b"\r\n") + b"\r\n.\r\n")
    _wait_held(smtp_sink, 1)
    client.close()  # no QUIT, no reading the reply: a client that died
    deadline = time.monotonic() + 10
    while smtp_sink.held():  # the sink notices the client is gone and stops holding
        assert time.monotonic() < deadline
        time.sleep(0.01)
    smtp_sink.release()
    assert [m["subject"] for m in smtp_sink.messages()] == ["lost reply"]


def test_bad_hold_is_refused(smtp_sink: RunningSmtpSink) -> None:
    response = httpx.post(f"{smtp_sink.http_url}/hold", json={"stage": "helo"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
