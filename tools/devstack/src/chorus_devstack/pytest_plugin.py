"""pytest fixtures that start real servers: Redis (alone, a Sentinel group, a Cluster),
Postgres, the SMTP sink, the mock upstream.

Registered through the ``pytest11`` entry point, so every test directory of the workspace
gets them. Session-scoped servers are shared by a whole run (on fresh ports and data
directories); the ``private_*`` fixtures start one for a single test that means to stop it.
A failing test that used a whole :class:`~chorus_devstack.stack.Stack` (the ``stack``
fixture of the e2e and browser suites) gets every process's log tail in its report.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from chorus_devstack.servers import (
    RunningMockOpenAI,
    RunningPostgres,
    RunningRedis,
    RunningRedisCluster,
    RunningSentinelGroup,
    RunningSmtpSink,
)
from chorus_devstack.stack import Stack

__all__ = [
    "devstack_dir",
    "mock_openai",
    "postgres_server",
    "private_postgres",
    "private_redis",
    "pytest_runtest_makereport",
    "redis_cluster",
    "redis_sentinel",
    "redis_server",
    "smtp_sink",
]


@pytest.fixture(scope="session")
def devstack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for this run's server data and logs."""
    return tmp_path_factory.mktemp("devstack")


@pytest.fixture(scope="session")
def redis_server(devstack_dir: Path) -> Iterator[RunningRedis]:
    """A Redis server shared by the session (do not stop it; use ``private_redis``)."""
    server = RunningRedis(devstack_dir / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RunningRedis]:
    """A Redis server of this test's own, free to stop and restart."""
    server = RunningRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _postgres() -> Iterator[RunningPostgres]:
    """A started PostgreSQL whose data lies outside pytest's temporary tree, removed after.

    As root, PostgreSQL runs as an unprivileged user that must be able to walk to its data
    directory. Every pytest session that starts on the machine resets
    ``/tmp/pytest-of-<user>`` to mode 0700, which would cut a running server off from its
    own files (it panics at its next checkpoint).
    """
    directory = Path(tempfile.mkdtemp(prefix="chorus-postgres-"))
    server = RunningPostgres(directory / "postgres")
    try:
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_sentinel(devstack_dir: Path) -> Iterator[RunningSentinelGroup]:
    """A Sentinel group (primary, replica, three Sentinels) shared by the session.

    A test may kill the primary (the group fails over) but must start it again; which
    server is the primary is whatever the Sentinels say.
    """
    group = RunningSentinelGroup(devstack_dir / "sentinel")
    group.start()
    yield group
    group.stop()


@pytest.fixture(scope="session")
def redis_cluster(devstack_dir: Path) -> Iterator[RunningRedisCluster]:
    """A Redis Cluster (three primaries, three replicas) shared by the session.

    A test may kill a node or move slots, but must leave all six running and every slot
    served (:meth:`RedisClusterGroup.wait_healthy`).
    """
    cluster = RunningRedisCluster(devstack_dir / "redis-cluster")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[RunningPostgres]:
    """A PostgreSQL server shared by the session (use ``create_database`` for isolation)."""
    yield from _postgres()


@pytest.fixture
def private_postgres() -> Iterator[RunningPostgres]:
    """A PostgreSQL server of this test's own, free to stop and restart."""
    yield from _postgres()


@pytest.fixture(scope="session")
def smtp_sink(devstack_dir: Path) -> Iterator[RunningSmtpSink]:
    """The SMTP sink shared by the session."""
    server = RunningSmtpSink(devstack_dir / "smtp")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mock_openai(devstack_dir: Path) -> Iterator[RunningMockOpenAI]:
    """The mock OpenAI upstream shared by the session."""
    server = RunningMockOpenAI(devstack_dir / "mock-openai")
    server.start()
    yield server
    server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the last 60 log lines of every process to a failing test that used a Stack."""
    report = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Stack):
                report.sections.append(("service logs", value.logs(lines=60)))
                break
    return report
