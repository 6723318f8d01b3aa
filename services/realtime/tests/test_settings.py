"""Settings a replica refuses to start with."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from pydantic import ValidationError

from chorus_realtime.settings import RealtimeSettings

CLUSTER_SEEDS = "127.0.0.1:7000,127.0.0.1:7001"


def test_private_rooms_on_a_redis_cluster_are_refused_with_the_way_out() -> None:
    with pytest.raises(ValidationError, match="PRIVATE_ROOMS=false"):
        RealtimeSettings(env="dev", realtime_redis_cluster=CLUSTER_SEEDS)
    # Every room open: the cluster is accepted; on one Redis private rooms are the default.
    opened = RealtimeSettings(env="dev", realtime_redis_cluster=CLUSTER_SEEDS, private_rooms=False)
    assert opened.cluster_seeds is not None
    assert not opened.private_rooms
    assert RealtimeSettings(env="dev").private_rooms


async def test_a_replica_with_private_rooms_and_a_cluster_exits_before_serving() -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "ENV": "dev",
        "REALTIME_REDIS_CLUSTER": CLUSTER_SEEDS,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chorus_realtime",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        _, stderr = await process.communicate()
    assert process.returncode != 0
    assert b"private rooms are not supported with REALTIME_REDIS_CLUSTER" in stderr
