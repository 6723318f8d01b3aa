"""The assistant mention: ``@assistant …`` in a room enqueues the worker's ``answer_in_room``.

The message itself is published like any other; its stream id becomes the job's
``message_id`` and part of its deterministic job id, ``assistant:<room>:<message id>``, so
a message is answered at most once however often the enqueue is retried. The enqueuer
records ``chorus:job-owner:<job id>`` = the user, for ``GET /api/jobs/{id}``.

**One user cannot flood the queue.** Each user may have ``ASSISTANT_MAX_PENDING_PER_USER``
questions waiting for an answer, across all connections and replicas: the job ids sit in
``chorus:assistant:pending:<user>``, a sorted set scored by when they expire
(:data:`PENDING_SECONDS`, longer than an answer's every try); the worker removes a job
from it when the answer is done. A question over the cap is still posted (it is a chat
message) but not enqueued, and the sender gets an ``error`` frame (``assistant_busy``).
"""

from __future__ import annotations

from typing import Final

from arq.connections import ArqRedis

from chorus_common.job_tracing import enqueue_span

__all__ = ["JOB_FUNCTION", "PENDING_SECONDS", "Assistant", "job_id", "pending_key"]

JOB_FUNCTION: Final = "answer_in_room"
JOB_OWNER_PREFIX: Final = "chorus:job-owner:"
JOB_OWNER_TTL: Final = 7 * 86_400
#: A pending question stops counting after this long, answered or not (a lost job).
PENDING_SECONDS: Final = 600
_SEPARATORS = " \t\n,:;"

# KEYS: the user's pending set. ARGV: job id, cap, lifetime ms. Returns 1 if the job may
# be enqueued (now counted as pending), 0 if the user already has ``cap`` pending.
_RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
return 1
"""


def job_id(room: str, message_id: str) -> str:
    """The deterministic job id of the answer to ``message_id`` in ``room``."""
    return f"assistant:{room}:{message_id}"


def pending_key(user_id: str) -> str:
    """The questions of ``user_id`` waiting for an answer (the worker removes answered ones)."""
    return f"chorus:assistant:pending:{user_id}"


class Assistant:
    """Recognises mentions and enqueues answers."""

    def __init__(
        self, arq: ArqRedis, *, mention: str, queue_name: str, max_pending: int = 3
    ) -> None:
        self.arq = arq
        self.mention = mention
        self.queue_name = queue_name
        self.max_pending = max_pending
        self._reserve = arq.register_script(_RESERVE_LUA)

    def prompt(self, text: str) -> str | None:
        """The prompt of a message addressed to the assistant, else None.

        ``"@assistant, what is 2+2?"`` → ``"what is 2+2?"``; ``"@assistants"`` is not a
        mention, nor is a mention with nothing after it.
        """
        stripped = text.lstrip()
        if not stripped.startswith(self.mention):
            return None
        rest = stripped[len(self.mention) :]
        if rest and rest[0] not in _SEPARATORS:
            return None
        prompt = rest.lstrip(_SEPARATORS).strip()
        return prompt or None

    async def ask(self, *, room: str, message_id: str, prompt: str, user_id: str) -> str | None:
        """Enqueue ``answer_in_room`` for a published message; the job id, or None when the
        user already has ``max_pending`` questions waiting."""
        job = job_id(room, message_id)
        reserved = await self._reserve(
            keys=[pending_key(user_id)], args=[job, self.max_pending, PENDING_SECONDS * 1000]
        )
        if int(reserved) != 1:
            return None
        await self.arq.set(JOB_OWNER_PREFIX + job, user_id, ex=JOB_OWNER_TTL)
        with enqueue_span(JOB_FUNCTION, queue=self.queue_name, job_id=job):
            await self.arq.enqueue_job(
                JOB_FUNCTION,
                room=room,
                message_id=message_id,
                prompt=prompt,
                user_id=user_id,
                _job_id=job,
                _queue_name=self.queue_name,
            )
        return job
