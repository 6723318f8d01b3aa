"""``python -m chorus_worker replay | dead-letters``, run as an operator would."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson

from chorus_worker.domain.dead_letters import record_dead_letter

from .harness import TEST_SECRET, Harness


async def _cli(harness: Harness, *args: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "ENV": "test",
        "JWT_SECRET": TEST_SECRET,
        "DATABASE_URL": harness.settings.database_url,
        "REDIS_URL": harness.settings.redis_url,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chorus_worker",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_list_and_replay_dead_letters(harness: Harness) -> None:
    assert (await _cli(harness, "dead-letters"))[1] == "no dead letters\n"
    dead_id = await record_dead_letter(
        harness.sessions,
        job_id="welcome:5",
        function="send_welcome_email",
        args=[5],
        kwargs={},
        error="PermanentJobError: SMTP 550 5.1.1 Mailbox unavailable\n\nTraceback ...",
        tries=1,
    )

    status, out, _ = await _cli(harness, "dead-letters")
    assert status == 0
    assert f"#{dead_id}" in out
    assert "send_welcome_email" in out
    assert "PermanentJobError: SMTP 550" in out
    assert "Traceback" not in out  # the first line only

    status, out, _ = await _cli(harness, "replay", str(dead_id))
    assert status == 0
    job_id = out.strip().rsplit(" ", 1)[1]
    info = await harness.job(job_id).info()
    assert info is not None
    assert (info.function, info.args) == ("send_welcome_email", (5,))

    status, _, err = await _cli(harness, "replay", str(dead_id))
    assert status == 1
    assert "--force" in err
    status, out, _ = await _cli(harness, "replay", str(dead_id), "--force")
    assert status == 0

    status, out, _ = await _cli(harness, "dead-letters", "--all", "--json")
    [row] = [orjson.loads(line) for line in out.splitlines()]
    assert row["id"] == dead_id
    assert row["replay_job_id"] is not None
    assert (await _cli(harness, "dead-letters"))[1] == "no dead letters\n"

    status, _, err = await _cli(harness, "replay", "424242")
    assert status == 1
    assert "no dead letter #424242" in err
