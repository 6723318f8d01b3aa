"""The assistant mention: ``@assistant …`` in a room enqueues the worker's ``answer_in_room``.

The message itself is published like any other; its stream id becomes the job's
``message_id`` and part of its deterministic job id, ``assistant:<room>:<message id>``, so
a message is answered at most once however often the enqueue is retried. The enqueuer
records ``chorus:job-owner:<job id>`` = the user, for ``GET /api/jobs/{id}``.
"""

from __future__ import annotations

from typing import Final

from arq.connections import ArqRedis

from chorus_common.job_tracing import enqueue_span

__all__ = ["JOB_FUNCTION", "Assistant", "job_id"]

JOB_FUNCTION: Final = "answer_in_room"
JOB_OWNER_PREFIX: Final = "chorus:job-owner:"
JOB_OWNER_TTL: Final = 7 * 86_400
_SEPARATORS = " \t\n,:;"


def job_id(room: str, message_id: str) -> str:
    """The deterministic job id of the answer to ``message_id`` in ``room``."""
    return f"assistant:{room}:{message_id}"


class Assistant:
    """Recognises mentions and enqueues answers."""

    def __init__(self, arq: ArqRedis, *, mention: str, queue_name: str) -> None:
        self.arq = arq
        self.mention = mention
        self.queue_name = queue_name

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

    async def ask(self, *, room: str, message_id: str, prompt: str, user_id: str) -> str:
        """Enqueue ``answer_in_room`` for a published message; returns the job id."""
        job = job_id(room, message_id)
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
