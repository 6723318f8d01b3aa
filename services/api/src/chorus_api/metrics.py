"""The api's own Prometheus metrics (the HTTP ones come from chorus_common).

- ``chorus_api_db_pool_in_use`` / ``chorus_api_db_pool_overflow``: read from the
  SQLAlchemy pool at scrape time, so they are exact whenever Prometheus looks;
  ``chorus_api_db_read_pool_in_use``: the same for the Reader's asyncpg pool;
- ``chorus_api_login_failures_total{reason}``: refused password attempts (logins and
  password checks of profile changes) — ``unknown_email``, ``wrong_password``, and the
  limits: ``delayed`` (an account+address pair in its progressive delay),
  ``locked_account``, ``locked_address``;
- ``chorus_api_signups_total{outcome}``: ``created``, ``existing_email`` (answered alike,
  the owner is mailed), ``refused_address``, ``refused_global`` (the sign-up limits);
- ``chorus_api_token_revocations_total{reason}``: ``password_changed``,
  ``account_deleted``; ``chorus_api_token_revocation_sync_failures_total``: copies to Redis
  that failed (the periodic resync repairs them);
- ``chorus_api_jobs_enqueued_total{function}`` and ``chorus_api_jobs_deduplicated_total
  {function}`` (an enqueue arq refused because a job with that id already exists);
- ``chorus_api_room_changes_total{change}``: rooms created, updated, deleted, members
  added, removed, leaving, roles changed, invitations sent, accepted, declined, revoked,
  direct-message rooms opened;
- ``chorus_api_room_refusals_total{reason}``: room requests refused — ``not_member`` (a
  private room's content or resource asked by an outsider), ``role`` (a member without the
  role), and the limits: ``rooms_per_owner``, ``members_per_room``,
  ``pending_invitations``, ``invitations_rate``, ``dms_rate``;
- ``chorus_api_room_invitation_mails_total{outcome}``: ``queued``, ``suppressed`` (the
  address had its share of invitation mails today);
- ``chorus_api_room_acl_sync_failures_total``: copies of access lists Redis refused (the
  periodic resync repairs them).
"""

from __future__ import annotations

import asyncpg
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

__all__ = [
    "DB_POOL_IN_USE",
    "DB_POOL_OVERFLOW",
    "JOBS_DEDUPLICATED",
    "JOBS_ENQUEUED",
    "KEY_DIRECTORY_SYNC_FAILURES",
    "LOGIN_FAILURES",
    "LOGIN_FAILURE_REASONS",
    "ROOM_ACL_SYNC_FAILURES",
    "ROOM_CHANGES",
    "ROOM_INVITATION_MAILS",
    "ROOM_REFUSALS",
    "SIGNUPS",
    "TOKEN_REVOCATIONS",
    "TOKEN_REVOCATION_SYNC_FAILURES",
    "track_pool",
    "track_read_pool",
    "untrack_pool",
]

DB_POOL_IN_USE = Gauge(
    "chorus_api_db_pool_in_use", "Database connections checked out of the pool right now."
)
DB_POOL_OVERFLOW = Gauge(
    "chorus_api_db_pool_overflow",
    "Connections open beyond DB_POOL_SIZE right now (at most DB_MAX_OVERFLOW).",
)
DB_READ_POOL_IN_USE = Gauge(
    "chorus_api_db_read_pool_in_use",
    "Connections of the read pool (hot session-less reads) checked out right now "
    "(at most DB_READ_POOL_SIZE).",
)
LOGIN_FAILURES = Counter(
    "chorus_api_login_failures_total",
    "Refused password attempts (logins, profile changes), by reason.",
    ["reason"],
)
LOGIN_FAILURE_REASONS = (
    "unknown_email",
    "wrong_password",
    "delayed",
    "locked_account",
    "locked_address",
)
for _reason in LOGIN_FAILURE_REASONS:
    LOGIN_FAILURES.labels(_reason)

SIGNUPS = Counter(
    "chorus_api_signups_total",
    "Registrations, by outcome (existing e-mails are answered like new ones).",
    ["outcome"],
)
for _outcome in ("created", "existing_email", "refused_address", "refused_global"):
    SIGNUPS.labels(_outcome)

TOKEN_REVOCATIONS = Counter(
    "chorus_api_token_revocations_total",
    "Accounts whose tokens were revoked, by reason.",
    ["reason"],
)
for _reason in ("password_changed", "account_deleted"):
    TOKEN_REVOCATIONS.labels(_reason)
KEY_DIRECTORY_SYNC_FAILURES = Counter(
    "chorus_api_key_directory_sync_failures_total",
    "Virtual key changes that could not be copied to Redis (the periodic resync retries).",
)
TOKEN_REVOCATION_SYNC_FAILURES = Counter(
    "chorus_api_token_revocation_sync_failures_total",
    "Token revocations that could not be copied to Redis (the periodic resync retries).",
)

JOBS_ENQUEUED = Counter(
    "chorus_api_jobs_enqueued_total",
    "Jobs the api put on the arq queue, by function.",
    ["function"],
)
JOBS_DEDUPLICATED = Counter(
    "chorus_api_jobs_deduplicated_total",
    "Enqueues arq refused because a job with the same id was queued, running or kept.",
    ["function"],
)
for _function in (
    "send_welcome_email",
    "send_account_exists_email",
    "send_room_invitation_email",
    "record_analytics",
):
    JOBS_ENQUEUED.labels(_function)
    JOBS_DEDUPLICATED.labels(_function)

ROOM_CHANGES = Counter(
    "chorus_api_room_changes_total",
    "Changes to rooms and their members, by kind.",
    ["change"],
)
for _change in (
    "created",
    "updated",
    "deleted",
    "member_added",
    "member_removed",
    "member_left",
    "role_changed",
    "invited",
    "invitation_accepted",
    "invitation_declined",
    "invitation_revoked",
    "dm_opened",
):
    ROOM_CHANGES.labels(_change)
ROOM_REFUSALS = Counter(
    "chorus_api_room_refusals_total",
    "Room requests refused, by reason (not a member, role, or the limit that refused).",
    ["reason"],
)
for _reason in (
    "not_member",
    "role",
    "rooms_per_owner",
    "members_per_room",
    "pending_invitations",
    "invitations_rate",
    "dms_rate",
):
    ROOM_REFUSALS.labels(_reason)
ROOM_INVITATION_MAILS = Counter(
    "chorus_api_room_invitation_mails_total",
    "Invitation mails, by outcome: queued, or suppressed by the per-address daily limit.",
    ["outcome"],
)
for _outcome in ("queued", "suppressed"):
    ROOM_INVITATION_MAILS.labels(_outcome)
ROOM_ACL_SYNC_FAILURES = Counter(
    "chorus_api_room_acl_sync_failures_total",
    "Room access lists that could not be copied to Redis (the periodic resync retries).",
)


def track_pool(engine: AsyncEngine) -> None:
    """Point the pool gauges at ``engine``'s pool (one engine per process)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):  # pragma: no cover - we always configure a QueuePool
        return
    DB_POOL_IN_USE.set_function(pool.checkedout)
    # QueuePool counts overflow from -pool_size upwards; only the part above zero is overflow.
    DB_POOL_OVERFLOW.set_function(lambda: max(0, pool.overflow()))


def track_read_pool(pool: asyncpg.Pool) -> None:
    """Point the read pool gauge at ``pool`` (the Reader's asyncpg pool)."""
    DB_READ_POOL_IN_USE.set_function(lambda: pool.get_size() - pool.get_idle_size())


def untrack_pool() -> None:
    """Stop reading disposed pools."""
    for gauge in (DB_POOL_IN_USE, DB_POOL_OVERFLOW, DB_READ_POOL_IN_USE):
        gauge.set_function(lambda: 0)
