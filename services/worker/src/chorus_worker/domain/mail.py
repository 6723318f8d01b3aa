"""Sending mail over SMTP (aiosmtplib), and telling temporary failures from permanent ones.

SMTP says itself whether to try again: 4xx replies are transient, 5xx permanent
(RFC 5321 §4.2.1). A refused or timed-out connection is transient too — the server may be
restarting. Everything that cannot work until someone changes configuration (a 5xx,
STARTTLS unsupported, credentials refused) is permanent, so the job is dead-lettered at
once instead of hammering the server.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib
from aiosmtplib import (
    SMTPException,
    SMTPNotSupported,
    SMTPRecipientsRefused,
    SMTPResponseException,
)

from chorus_worker.domain.errors import PermanentJobError, TemporaryJobError
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["DeliveryError", "Mailer", "classify", "notice", "send_from_job"]


class DeliveryError(Exception):
    """A message was not accepted; ``temporary`` says whether trying later may help."""

    def __init__(self, message: str, *, temporary: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.code = code


def _is_temporary(code: int) -> bool:
    return 400 <= code < 500


def classify(exc: BaseException) -> DeliveryError:
    """Map an aiosmtplib (or socket) error to a :class:`DeliveryError`."""
    if isinstance(exc, SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        temporary = bool(codes) and all(_is_temporary(c) for c in codes)
        detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
        return DeliveryError(
            f"recipients refused: {detail}", temporary=temporary, code=codes[0] if codes else None
        )
    if isinstance(exc, SMTPResponseException):
        return DeliveryError(
            f"SMTP {exc.code} {exc.message}", temporary=_is_temporary(exc.code), code=exc.code
        )
    if isinstance(exc, SMTPNotSupported):
        return DeliveryError(f"SMTP server lacks a feature we need: {exc}", temporary=False)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"SMTP server certificate refused: {exc}", temporary=False)
    # Disconnects, connect errors and timeouts (all SMTPException subclasses that are also
    # ConnectionError/TimeoutError), refused connections and resolver failures (OSError).
    return DeliveryError(f"{type(exc).__name__}: {exc}", temporary=True)


@dataclass(frozen=True, slots=True)
class Mailer:
    """Delivers messages to one SMTP server (a relay: it queues and retries onwards)."""

    host: str
    port: int
    username: str | None
    password: str | None
    starttls: bool
    tls: bool
    timeout: float

    @classmethod
    def from_settings(cls, settings: WorkerServiceSettings) -> Mailer:
        """The mailer ``SMTP_*`` describes."""
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=(
                settings.smtp_password.get_secret_value()
                if settings.smtp_password is not None
                else None
            ),
            starttls=settings.smtp_starttls,
            tls=settings.smtp_tls,
            timeout=settings.smtp_timeout,
        )

    async def send(self, message: EmailMessage) -> None:
        """Send ``message`` (sender and recipients from its headers) or raise DeliveryError.

        One connection per message: welcome mails are rare enough that a pooled SMTP session
        would mostly be a stale one.
        """
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls,
            # False, not None: never upgrade opportunistically with unchecked settings.
            start_tls=False,
            timeout=self.timeout,
        )
        try:
            async with client:
                await self._secure_and_log_in(client)
                await client.send_message(message)
        except (SMTPException, OSError) as exc:
            raise classify(exc) from exc

    async def _secure_and_log_in(self, client: aiosmtplib.SMTP) -> None:
        """STARTTLS and AUTH as configured; a server that offers neither is refused for good.

        aiosmtplib reports a missing extension as a bare ``SMTPException``, which would read
        as a passing failure: a server that does not offer STARTTLS or AUTH today will not
        tomorrow, and credentials are never sent to one that was asked for STARTTLS.
        """
        if self.starttls:
            await client.ehlo()
            if not client.supports_extension("starttls"):
                msg = "the SMTP server does not offer STARTTLS (SMTP_STARTTLS is set)"
                raise DeliveryError(msg, temporary=False)
            await client.starttls()
        if self.username is not None and self.password is not None:
            await client.ehlo()  # after STARTTLS, the server's extensions are new
            if not client.supports_extension("auth"):
                msg = "the SMTP server does not offer AUTH (SMTP_USERNAME is set)"
                raise DeliveryError(msg, temporary=False)
            await client.login(self.username, self.password)


async def send_from_job(mailer: Mailer, message: EmailMessage) -> None:
    """Send ``message`` for a job: a temporary failure is a :class:`TemporaryJobError`
    (retried with backoff), a permanent one a :class:`PermanentJobError` (dead-lettered)."""
    try:
        await mailer.send(message)
    except DeliveryError as exc:
        if exc.temporary:
            raise TemporaryJobError(str(exc)) from exc
        raise PermanentJobError(str(exc)) from exc


def notice(settings: WorkerServiceSettings, *, to: str, subject: str, kind: str) -> EmailMessage:
    """An automatic plain-text mail to ``to`` (the caller sets its content): from
    ``SMTP_FROM``, a fresh Message-ID naming ``kind``, dated now, ``Auto-Submitted`` (RFC
    3834: no auto-replies, please)."""
    domain = settings.sender_address.rpartition("@")[2] or "chorus.localhost"
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(kind, domain=domain)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Auto-Submitted"] = "auto-generated"
    return message
