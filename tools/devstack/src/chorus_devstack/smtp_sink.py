"""An SMTP sink that keeps what it receives, with an HTTP API to read it and to misbehave.

``python -m chorus_devstack.smtp_sink --smtp-port 8025 --http-port 8026 --maildir DIR``

- SMTP (aiosmtpd): accepts every message and stores it as ``DIR/<n>.eml`` and in memory.
- ``GET /messages``: every message received, parsed (from, to, subject, text, html).
- ``DELETE /messages``: forget them. ``GET /healthz``.
- ``POST /mode`` ``{"mode": "accept" | "tempfail" | "permfail", "count": n}``: answer the
  next ``n`` messages (all, if ``count`` is absent) with 451 or 550, to test retries and
  dead letters against a real SMTP conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import itertools
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["Mailbox", "build_http_app", "main"]

RESPONSES = {
    "tempfail": "451 4.3.0 Temporary failure, try again later",
    "permfail": "550 5.1.1 Mailbox unavailable",
}


@dataclass
class Mode:
    """How the sink answers the next messages."""

    kind: str = "accept"
    remaining: int | None = None  # None: until changed


class Mailbox:
    """Stores messages and decides, per message, whether to accept them."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.messages: list[dict[str, Any]] = []
        self.mode = Mode()
        self.refused = 0
        self._seq = itertools.count(len(list(maildir.glob("*.eml"))) + 1)

    def _current_mode(self) -> str:
        mode = self.mode
        if mode.kind != "accept" and mode.remaining is not None:
            mode.remaining -= 1
            if mode.remaining < 0:
                self.mode = Mode()
                return "accept"
        return mode.kind

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message, or refuse it as the current mode says."""
        kind = self._current_mode()
        if kind in RESPONSES:
            self.refused += 1
            return RESPONSES[kind]
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        number = next(self._seq)
        (self.maildir / f"{number:06d}.eml").write_bytes(raw)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        text = parsed.get_body(preferencelist=("plain",))
        html = parsed.get_body(preferencelist=("html",))
        self.messages.append(
            {
                "number": number,
                "mail_from": envelope.mail_from,
                "rcpt_to": list(envelope.rcpt_tos),
                "from": str(parsed["From"] or ""),
                "to": str(parsed["To"] or ""),
                "subject": str(parsed["Subject"] or ""),
                "message_id": str(parsed["Message-ID"] or ""),
                "headers": {k: str(v) for k, v in parsed.items()},
                "text": text.get_content() if text is not None else None,
                "html": html.get_content() if html is not None else None,
            }
        )
        return "250 Message accepted for delivery"


def build_http_app(mailbox: Mailbox) -> Starlette:
    """The inspection and control API."""

    async def list_messages(request: Request) -> JSONResponse:
        return JSONResponse({"items": mailbox.messages, "refused": mailbox.refused})

    async def clear_messages(request: Request) -> JSONResponse:
        mailbox.messages.clear()
        mailbox.refused = 0
        return JSONResponse({"cleared": True})

    async def set_mode(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            kind = body["mode"]
            count = body.get("count")
            if kind not in ("accept", *RESPONSES) or not (count is None or int(count) >= 0):
                raise ValueError(kind)
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {
                    "error": {
                        "code": "validation_error",
                        "message": "mode: accept|tempfail|permfail",
                    }
                },
                status_code=422,
            )
        mailbox.mode = Mode(kind, None if count is None else int(count))
        return JSONResponse({"mode": kind, "count": count})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/messages", list_messages, methods=["GET"]),
            Route("/messages", clear_messages, methods=["DELETE"]),
            Route("/mode", set_mode, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", healthz),
        ]
    )


async def serve(host: str, smtp_port: int, http_port: int, maildir: Path) -> None:
    """Serve SMTP and HTTP until SIGTERM."""
    mailbox = Mailbox(maildir)
    loop = asyncio.get_running_loop()
    smtp_server = await loop.create_server(
        lambda: SMTP(mailbox, hostname="chorus-smtp-sink", loop=loop), host, smtp_port
    )
    config = uvicorn.Config(
        build_http_app(mailbox), host=host, port=http_port, log_config=None, access_log=False
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        smtp_server.close()
        await smtp_server.wait_closed()


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m chorus_devstack.smtp_sink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--http-port", type=int, default=8026)
    parser.add_argument("--maildir", type=Path, default=Path(".devstack/mail"))
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.smtp_port, args.http_port, args.maildir))


if __name__ == "__main__":
    main()
