"""The mailer: real SMTP conversations, and which failures are worth another try."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from aiosmtplib import (
    SMTPConnectError,
    SMTPDataError,
    SMTPNotSupported,
    SMTPRecipientRefused,
    SMTPRecipientsRefused,
    SMTPServerDisconnected,
)

from chorus_devstack.ports import free_port
from chorus_devstack.servers import RunningSmtpSink
from chorus_worker.domain.mail import DeliveryError, Mailer, classify

from ..harness import make_settings


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Chorus <no-reply@chorus.localhost>"
    message["To"] = "ada@example.com"
    message["Subject"] = "Hello"
    message.set_content("text")
    return message


def _mailer(port: int) -> Mailer:
    return Mailer.from_settings(
        make_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_timeout=5)
    )


async def test_a_message_is_delivered(smtp: RunningSmtpSink) -> None:
    await _mailer(smtp.smtp_port).send(_message())
    [mail] = smtp.messages()
    assert (mail["rcpt_to"], mail["subject"]) == (["ada@example.com"], "Hello")


@pytest.mark.parametrize(
    ("mode", "code", "temporary"), [("tempfail", 451, True), ("permfail", 550, False)]
)
async def test_refusals_carry_their_code_and_kind(
    smtp: RunningSmtpSink, mode: str, code: int, temporary: bool
) -> None:
    smtp.set_mode(mode, count=1)
    with pytest.raises(DeliveryError) as refused:
        await _mailer(smtp.smtp_port).send(_message())
    assert (refused.value.code, refused.value.temporary) == (code, temporary)


async def test_nobody_listening_is_temporary() -> None:
    with pytest.raises(DeliveryError) as refused:
        await _mailer(free_port()).send(_message())
    assert refused.value.temporary


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        (SMTPDataError(452, "mailbox full"), True),
        (SMTPDataError(554, "rejected"), False),
        (SMTPRecipientsRefused([SMTPRecipientRefused(450, "busy", "a@x")]), True),
        (SMTPRecipientsRefused([SMTPRecipientRefused(550, "unknown", "a@x")]), False),
        (SMTPServerDisconnected("gone"), True),
        (SMTPConnectError("refused"), True),
        (SMTPNotSupported("no STARTTLS"), False),
        (ConnectionRefusedError(111, "refused"), True),
    ],
)
def test_classification(error: Exception, temporary: bool) -> None:
    assert classify(error).temporary is temporary
