"""An SMTP sink that keeps what it receives, with an HTTP API to read it and to misbehave.

``python -m chorus_devstack.smtp_sink --smtp-port 8025 --http-port 8026 --maildir DIR``

- SMTP (aiosmtpd): accepts every message and stores it as ``DIR/<n>.eml`` and in memory.
- ``GET /messages``: every message received, parsed (from, to, subject, text, html), plus
  ``refused`` (a count), ``refusals`` (``{"code", "at"}`` per refused message, ``at`` in
  ``time.time()`` seconds) and ``held`` (conversations being held right now).
- ``DELETE /messages``: forget them (and the refusals). ``GET /healthz``.
- ``POST /mode`` ``{"mode": "accept" | "tempfail" | "permfail", "count": n}``: answer the
  next ``n`` messages (all, if ``count`` is absent) with 451 or 550, to test retries and
  dead letters against a real SMTP conversation.
- ``POST /hold`` ``{"stage": "rcpt" | "data", "count": n, "seconds": s}``: hold the next
  ``n`` conversations (default 1) at that stage until ``POST /release`` or ``s`` seconds
  (default 30). ``rcpt``: before answering ``RCPT TO`` (nothing is stored yet). ``data``:
  the message is stored, then its 250 reply held — a server that committed a message
  while its client has not heard so (the "lost 250" case of a client that dies then).
  Lets a test stop a client mid-conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import itertools
import time
from dataclasses import dataclass, field
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


HOLD_STAGES = ("rcpt", "data")


@dataclass
class Mode:
    """How the sink answers the next messages."""

    kind: str = "accept"
    remaining: int | None = None  # None: until changed


@dataclass
class Hold:
    """Conversations to hold at a stage until released (or ``seconds`` pass)."""

    stage: str
    remaining: int
    seconds: float
    released: asyncio.Event = field(default_factory=asyncio.Event)


class Mailbox:
    """Stores messages and decides, per message, whether to accept them."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir
        self.maildir.mkdir(parents=True, exist_ok=True)
        self.messages: list[dict[str, Any]] = []
        self.mode = Mode()
        self.refused = 0
        self.refusals: list[dict[str, Any]] = []
        self.hold: Hold | None = None
        self.held = 0
        self._holds: list[Hold] = []
        self._seq = itertools.count(len(list(maildir.glob("*.eml"))) + 1)

    def _current_mode(self) -> str:
        mode = self.mode
        if mode.kind != "accept" and mode.remaining is not None:
            mode.remaining -= 1
            if mode.remaining < 0:
                self.mode = Mode()
                return "accept"
        return mode.kind

    def set_hold(self, stage: str, count: int, seconds: float) -> None:
        """Hold the next ``count`` conversations at ``stage``."""
        self.hold = Hold(stage, count, seconds)
        self._holds.append(self.hold)

    def release(self) -> None:
        """Let every held conversation go on, and hold no more."""
        for hold in self._holds:
            hold.released.set()
        self._holds.clear()
        self.hold = None

    async def _maybe_hold(self, stage: str) -> None:
        hold = self.hold
        if hold is None or hold.stage != stage:
            return
        hold.remaining -= 1
        if hold.remaining <= 0:
            self.hold = None
        self.held += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(hold.released.wait(), hold.seconds)
        finally:
            self.held -= 1

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Accept the recipient, after a hold if one is set for this stage."""
        await self._maybe_hold("rcpt")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store the message, or refuse it as the current mode says."""
        kind = self._current_mode()
        if kind in RESPONSES:
            self.refused += 1
            self.refusals.append({"code": int(RESPONSES[kind][:3]), "at": time.time()})
            return RESPONSES[kind]
        self._store(envelope)
        # Stored (committed) first, answered after: a held reply is the "lost 250" window.
        await self._maybe_hold("data")
        return "250 Message accepted for delivery"

    def _store(self, envelope: Envelope) -> None:
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


def build_http_app(mailbox: Mailbox) -> Starlette:
    """The inspection and control API."""

    async def list_messages(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "items": mailbox.messages,
                "refused": mailbox.refused,
                "refusals": mailbox.refusals,
                "held": mailbox.held,
            }
        )

    async def clear_messages(request: Request) -> JSONResponse:
        mailbox.messages.clear()
        mailbox.refused = 0
        mailbox.refusals.clear()
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

    async def set_hold(request: Request) -> JSONResponse:
        try:
            body = await request.json()
            stage = body["stage"]
            count = int(body.get("count", 1))
            seconds = float(body.get("seconds", 30.0))
            if stage not in HOLD_STAGES or count < 1 or not 0 < seconds <= 3600:
                raise ValueError(stage)
        except (ValueError, KeyError, TypeError):
            return JSONResponse(
                {
                    "error": {
                        "code": "validation_error",
                        "message": "stage: rcpt|data, count >= 1, 0 < seconds <= 3600",
                    }
                },
                status_code=422,
            )
        mailbox.set_hold(stage, count, seconds)
        return JSONResponse({"stage": stage, "count": count, "seconds": seconds})

    async def release(request: Request) -> JSONResponse:
        mailbox.release()
        return JSONResponse({"released": True})

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/messages", list_messages, methods=["GET"]),
            Route("/messages", clear_messages, methods=["DELETE"]),
            Route("/mode", set_mode, methods=["POST"]),
            Route("/hold", set_hold, methods=["POST"]),
            Route("/release", release, methods=["POST"]),
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
