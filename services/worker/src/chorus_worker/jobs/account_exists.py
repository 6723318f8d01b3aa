"""``send_account_exists_email(user_id)``: someone tried to register an address that has an account.

The api answers such a registration exactly like a new one, so registering reveals
nothing about which addresses have accounts; the owner of the address learns what
happened from this mail instead: someone (maybe they) tried to sign up, nothing changed,
log in as usual. Nothing the registrant typed is in it — not the name, not the password
— so it cannot carry their message to a stranger.

The api enqueues it as ``account-exists:<user_id>:<hour>``: however often strangers try
the address, its owner gets at most one such mail an hour. A mail sent is remembered in
Redis under its job id (``chorus:account-exists:sent:<job id>``), so a redelivered job
does not mail again (the same window as the welcome mail: a worker killed between the
server's 250 and that write sends it twice). A user deleted meanwhile gets nothing.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from typing import Any, Final

from redis.exceptions import RedisError
from sqlalchemy import select

from chorus_schema.models import User
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.mail import notice, send_from_job
from chorus_worker.jobs.arguments import valid_user_id
from chorus_worker.metrics import EMAILS_SENT
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["render_account_exists", "send_account_exists_email"]

logger = logging.getLogger("chorus.worker.account_exists")

SUBJECT: Final = "Someone tried to sign up with your address"
_SENT_TTL_SECONDS: Final = 86_400


def render_account_exists(email: str, settings: WorkerServiceSettings) -> EmailMessage:
    """The mail to the owner of ``email``: fixed text, nothing from the registrant."""
    message = notice(settings, to=email, subject=SUBJECT, kind="account-exists")
    message.set_content(
        "Hi,\n\n"
        "someone just tried to create a Chorus account with this e-mail address. It\n"
        "already has one, so nothing was created and nothing about your account changed.\n\n"
        f"If it was you: log in at {settings.app_url} with your password.\n"
        "If it was not you, there is nothing to do; your account is as it was.\n\n"
        "— The Chorus team\n"
    )
    return message


async def send_account_exists_email(ctx: JobContext, user_id: int) -> dict[str, Any]:
    """Tell user ``user_id`` that their address was used to register again."""
    uid = valid_user_id(user_id)
    found = resources(ctx)
    job_id = str(ctx.get("job_id", f"account-exists:{uid}"))
    sent_key = f"chorus:account-exists:sent:{job_id}"
    if await found.redis.get(sent_key) is not None:
        return {"status": "already_sent"}
    async with found.sessions() as session:
        email = await session.scalar(select(User.email).where(User.id == uid))
    if email is None:
        return {"status": "skipped", "reason": "no such user"}
    message = render_account_exists(email, found.settings)
    await send_from_job(found.mailer, message)
    EMAILS_SENT.inc()
    message_id = str(message["Message-ID"])
    try:
        await found.redis.set(sent_key, message_id, ex=_SENT_TTL_SECONDS)
    except RedisError as exc:
        logger.warning("could not remember the sent account-exists mail: %s", exc)
    logger.info("account-exists mail sent", extra={"user_id": uid, "message_id": message_id})
    return {"status": "sent", "message_id": message_id}
