"""``send_welcome_email(user_id)``: one welcome mail per user, however often the job runs.

The api enqueues it as job ``welcome:<user_id>`` after the registration commit. The job:

1. reads the user; a user who is gone needs no mail, one with ``welcome_sent_at`` set
   already has it (a redelivery, a replay) — both end here;
2. sends the mail, unless Redis remembers a send whose database marker never landed
   (``chorus:welcome:sent:<id>``, set the moment the server said 250);
3. sets ``welcome_sent_at`` and adds a ``welcome.sent`` notification in one transaction,
   then publishes the notification on ``user:<id>``.

**The window we cannot close** is between the SMTP server accepting the message (its 250
reply to the data) and the Redis marker being written, a single round trip to Redis later
— well under a millisecond on a healthy network (plus the time the 250 itself spends on
the wire: a server that accepted and a worker killed before reading the reply look the
same to us). A worker killed there sends the mail again on the next try; SMTP offers no
way to make a delivery and a write atomic. If Redis refuses the marker, the database
marker right after it still records the send; only when both stores fail is it resent.
The duplicate is then recognisable downstream: the Message-ID is derived from the user
(``<welcome.<id>.<created_at>@<sender domain>>``), so both copies carry the same one and
relays or mail clients that de-duplicate by Message-ID drop the second. Losing the
*database* after the send (the commit fails) is covered by the Redis marker: the retry
records the send without mailing again.

SMTP 4xx replies and unreachable servers retry with backoff (``TemporaryJobError``); 5xx
replies dead-letter the job at once (``PermanentJobError``), for ``replay`` once fixed.

**Nothing linkable from the registrant.** Anyone can register any address, so this mail
may reach a stranger, from our domain, with text the registrant chose. The only such
text is the name, and it is used only when it cannot become a link or a trick
(:func:`greeting_name`: no URL, domain or address, no control or bidirectional
characters, at most 64 characters); otherwise the mail greets without it. The HTML part
escapes it besides.
"""

from __future__ import annotations

import html
import logging
import re
import unicodedata
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Final

from redis.exceptions import RedisError
from sqlalchemy import func, update

from chorus_schema.models import User
from chorus_schema.notifications import add_notification, publish_notification
from chorus_worker.deps import JobContext, resources
from chorus_worker.domain.errors import TemporaryJobError
from chorus_worker.domain.locks import redis_lock
from chorus_worker.domain.mail import send_from_job
from chorus_worker.jobs.arguments import valid_user_id
from chorus_worker.metrics import EMAILS_SENT
from chorus_worker.settings import WorkerServiceSettings

__all__ = ["greeting_name", "message_id_for", "render_welcome", "send_welcome_email"]

logger = logging.getLogger("chorus.worker.welcome")

NOTIFICATION_TYPE: Final = "welcome.sent"
SUBJECT: Final = "Welcome to Chorus"
_SENT_TTL_SECONDS: Final = 7 * 86_400
#: Longest name a greeting carries; a longer "name" is a message, not a name.
MAX_GREETING_NAME: Final = 64
#: What mail clients turn into links: schemes, www., e-mail addresses, dotted domains
#: (with any of the dots a linkifier may take for one).
_LINKABLE = re.compile(
    r"://|www[.\u3002\uff0e\uff61]|@|[\w-][.\u3002\uff0e\uff61][^\W\d_]{2,}", re.IGNORECASE
)


def _sent_key(user_id: int) -> str:
    return f"chorus:welcome:sent:{user_id}"


def _lock_key(user_id: int) -> str:
    return f"chorus:welcome:lock:{user_id}"


def message_id_for(user_id: int, created_at: datetime, sender: str) -> str:
    """The Message-ID of a user's welcome mail: the same for every attempt."""
    domain = sender.rpartition("@")[2] or "chorus.localhost"
    return f"<welcome.{user_id}.{int(created_at.timestamp())}@{domain}>"


def greeting_name(full_name: str) -> str | None:
    """``full_name`` if it is safe to put in a mail to a stranger, else None.

    Safe: at most :data:`MAX_GREETING_NAME` characters, nothing a mail client would link
    (a URL, ``www.``, an address, a dotted domain), no control, format or bidirectional
    characters (which can make text read other than it is).
    """
    name = " ".join(full_name.split())
    if not name or len(name) > MAX_GREETING_NAME or _LINKABLE.search(name):
        return None
    if any(unicodedata.category(char) in {"Cc", "Cf", "Co", "Cs"} for char in name):
        return None
    return name


def render_welcome(user: User, settings: WorkerServiceSettings) -> EmailMessage:
    """The welcome mail for ``user``: plain text with an HTML alternative."""
    name = greeting_name(user.full_name)
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = formataddr((name, user.email)) if name else user.email
    message["Subject"] = SUBJECT
    message["Message-ID"] = message_id_for(user.id, user.created_at, settings.sender_address)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    hello = f"Hi {name}," if name else "Hi,"
    message.set_content(
        f"{hello}\n\n"
        "welcome to Chorus! Your account is ready: join a room, say hello, and ask\n"
        "@assistant anything.\n\n"
        f"Get started: {settings.app_url}\n\n"
        "— The Chorus team\n"
    )
    safe_url = html.escape(settings.app_url, quote=True)
    message.add_alternative(
        "<!doctype html>\n<html><body>\n"
        f"<p>{html.escape(hello)}</p>\n"
        "<p>welcome to <strong>Chorus</strong>! Your account is ready: join a room, say "
        "hello, and ask <code>@assistant</code> anything.</p>\n"
        f'<p><a href="{safe_url}">Get started</a></p>\n'
        "<p>— The Chorus team</p>\n</body></html>\n",
        subtype="html",
    )
    return message


async def _deliver(ctx: JobContext, user: User) -> str:
    """Send the mail once (guarded against a concurrent run); returns its Message-ID."""
    found = resources(ctx)
    redis = found.redis
    async with redis_lock(redis, _lock_key(user.id), ttl=found.settings.job_timeout) as mine:
        if not mine:
            msg = f"another delivery to user {user.id} is in progress"
            raise TemporaryJobError(msg)
        # Checked under the lock: a concurrent run may have sent it meanwhile.
        already = await redis.get(_sent_key(user.id))
        if already is not None:
            return bytes(already).decode()
        message = render_welcome(user, found.settings)
        await send_from_job(found.mailer, message)
        message_id = str(message["Message-ID"])
        EMAILS_SENT.inc()
        try:
            await redis.set(_sent_key(user.id), message_id, ex=_SENT_TTL_SECONDS)
        except RedisError as exc:
            # The database marker is written next; only if both fail is the mail resent.
            logger.warning("could not remember the sent welcome mail in Redis: %s", exc)
        logger.info("welcome mail sent", extra={"user_id": user.id, "message_id": message_id})
        return message_id


async def send_welcome_email(ctx: JobContext, user_id: int) -> dict[str, Any]:
    """Mail the welcome message to user ``user_id`` (once), then notify them."""
    uid = valid_user_id(user_id)
    found = resources(ctx)
    async with found.sessions() as session:
        user = await session.get(User, uid)
    if user is None:
        return {"status": "skipped", "reason": "no such user"}
    if user.welcome_sent_at is not None:
        return {"status": "already_sent"}

    message_id = await _deliver(ctx, user)

    async with found.sessions.begin() as session:
        sent_at = await session.scalar(
            update(User)
            .where(User.id == uid, User.welcome_sent_at.is_(None))
            .values(welcome_sent_at=func.now())
            .returning(User.welcome_sent_at)
        )
        if sent_at is None:  # another run recorded it between our read and now
            return {"status": "already_sent"}
        notification = await add_notification(
            session,
            user_id=uid,
            type_=NOTIFICATION_TYPE,
            data={"email": user.email, "message_id": message_id},
        )
    # After the commit, so nobody hears of a mail the database does not hold. If Redis
    # fails here the retry finds the marker set: the row stays, the live event is lost.
    await publish_notification(found.bus, notification, sender="worker")
    return {"status": "sent", "message_id": message_id, "sent_at": sent_at.isoformat()}
