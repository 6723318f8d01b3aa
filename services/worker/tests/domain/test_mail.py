"""The mailer: real SMTP conversations, and which failures are worth another try.

The TLS tests run an aiosmtpd server with a certificate this module makes (its own little
CA, with ``openssl``), as a relay on port 587 or 465 would present one. The worker trusts
what the system trusts; an operator with a private CA points ``SSL_CERT_FILE`` at it, as
here.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
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
from chorus_worker.domain.errors import PermanentJobError
from chorus_worker.domain.mail import DeliveryError, Mailer, classify, send_from_job

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


# -- TLS and AUTH --------------------------------------------------------------------------

USER, PASSWORD = "chorus-relay", "relay-secret-42"


@dataclass(frozen=True)
class Certificates:
    """A CA, and a server certificate it signed for 127.0.0.1."""

    ca: Path
    cert: Path
    key: Path


@dataclass
class Relay:
    """What the SMTP server saw: logins tried, and each message with how it arrived."""

    port: int
    logins: list[tuple[str, bool]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Keep the message with whether it came over TLS and who had logged in."""
        self.received.append(
            {
                "tls": server.transport is not None
                and server.transport.get_extra_info("sslcontext") is not None,
                "login": session.auth_data if session.authenticated else None,
                "rcpt_to": envelope.rcpt_tos,
                "content": envelope.content,
            }
        )
        return "250 2.0.0 OK"

    def authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """Accept only USER / PASSWORD."""
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (login, password) == (USER, PASSWORD)
        self.logins.append((login, ok))
        # handled=False: aiosmtpd itself answers a refusal (535), as a relay does.
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it (EC keys: quick)."""
    directory = tmp_path_factory.mktemp("tls")
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, csr = directory / "smtp.pem", directory / "smtp.key", directory / "smtp.csr"
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=Chorus test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    extensions = directory / "server.ext"
    extensions.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions),
    )  # fmt: skip
    return Certificates(ca=ca, cert=cert, key=key)


def _server_context(certificates: Certificates) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates.cert, certificates.key)
    return context


@pytest.fixture
def starttls_relay(certificates: Certificates) -> Iterator[Relay]:
    """Port 587 style: plain first, STARTTLS required before anything, then AUTH required."""
    relay = Relay(port=free_port())
    controller = Controller(
        relay,
        hostname="127.0.0.1",
        port=relay.port,
        tls_context=_server_context(certificates),
        require_starttls=True,
        auth_required=True,
        auth_require_tls=True,
        authenticator=relay.authenticate,
    )
    controller.start()
    yield relay
    controller.stop()


@pytest.fixture
def trusted(certificates: Certificates, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's process trusts the test CA, as it would a private CA by SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates.ca))


def _tls_mailer(port: int, **settings: Any) -> Mailer:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_timeout": 10,
        "smtp_starttls": True,
        "smtp_username": USER,
        "smtp_password": PASSWORD,
    }
    values.update(settings)
    return Mailer.from_settings(make_settings(**values))


@pytest.mark.usefixtures("trusted")
async def test_starttls_then_auth_delivers_the_message(starttls_relay: Relay) -> None:
    await _tls_mailer(starttls_relay.port).send(_message())
    [mail] = starttls_relay.received
    assert mail["tls"] is True
    assert mail["login"] == USER
    assert mail["rcpt_to"] == ["ada@example.com"]
    assert b"Subject: Hello" in mail["content"]
    assert starttls_relay.logins == [(USER, True)]


@pytest.mark.usefixtures("trusted")
async def test_refused_credentials_are_permanent(starttls_relay: Relay) -> None:
    with pytest.raises(DeliveryError) as refused:
        await _tls_mailer(starttls_relay.port, smtp_password="wrong-password").send(_message())
    assert (refused.value.code, refused.value.temporary) == (535, False)
    assert set(starttls_relay.logins) == {(USER, False)}  # each mechanism offered, refused
    assert starttls_relay.received == []
    # A job meeting it is dead-lettered at once: retrying cannot fix a password.
    with pytest.raises(PermanentJobError):
        await send_from_job(_tls_mailer(starttls_relay.port, smtp_password="wrong"), _message())


async def test_a_certificate_nobody_vouches_for_is_refused_before_any_credential(
    starttls_relay: Relay, certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSL_CERT_FILE points at a CA that did not sign the server's certificate.
    other = certificates.ca.parent / "other-ca.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(other.with_suffix(".key")), "-out", str(other), "-days", "2",
        "-subj", "/CN=Someone else",
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    with pytest.raises(DeliveryError) as refused:
        await _tls_mailer(starttls_relay.port).send(_message())
    assert refused.value.temporary is False
    assert "certificate refused" in str(refused.value)
    assert starttls_relay.logins == []  # the password never went to an unverified server
    assert starttls_relay.received == []


async def test_starttls_wanted_but_not_offered_is_permanent_and_sends_nothing() -> None:
    # A server without TLS that would even take AUTH in the clear: the mailer refuses.
    relay = Relay(port=free_port())
    controller = Controller(
        relay,
        hostname="127.0.0.1",
        port=relay.port,
        auth_require_tls=False,
        authenticator=relay.authenticate,
    )
    controller.start()
    try:
        with pytest.raises(DeliveryError) as refused:
            await _tls_mailer(relay.port).send(_message())
    finally:
        controller.stop()
    assert refused.value.temporary is False
    assert "does not offer STARTTLS" in str(refused.value)
    assert relay.logins == []
    assert relay.received == []


@pytest.mark.usefixtures("trusted")
async def test_implicit_tls_delivers_the_message(certificates: Certificates) -> None:
    # Port 465 style: TLS from the first byte. (aiosmtpd offers AUTH only after STARTTLS,
    # so the login is the STARTTLS tests' business.)
    relay = Relay(port=free_port())
    controller = Controller(
        relay, hostname="127.0.0.1", port=relay.port, ssl_context=_server_context(certificates)
    )
    controller.start()
    try:
        mailer = _tls_mailer(relay.port, smtp_starttls=False, smtp_tls=True, smtp_username=None)
        await mailer.send(_message())
    finally:
        controller.stop()
    [mail] = relay.received
    assert mail["tls"] is True
    assert mail["rcpt_to"] == ["ada@example.com"]
