"""The SMTP sink keeps what it receives and can refuse on demand."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

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
