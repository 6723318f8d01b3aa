"""Local servers for service tests: Redis (alone, as a Sentinel group, as a Cluster),
Postgres, the SMTP sink, the mock upstream.

Each wraps :class:`ManagedProcess` es with what a test needs: its URL and ``stop``,
``start`` and ``kill`` on the same port and data, so a test can take a dependency away and
give it back. The pytest plugin hands them out as fixtures.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from chorus_devstack.ports import free_port
from chorus_devstack.postgres import EmbeddedPostgres
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.redis_cluster import RedisClusterGroup
from chorus_devstack.redis_sentinel import MASTER_NAME, SentinelGroup
from chorus_devstack.redis_server import RedisServer

__all__ = [
    "LocalServer",
    "RunningGroup",
    "RunningMockOpenAI",
    "RunningOtlpReceiver",
    "RunningPostgres",
    "RunningRedis",
    "RunningRedisCluster",
    "RunningSentinelGroup",
    "RunningSmtpSink",
]


def smtp_sink_spec(
    smtp_port: int, http_port: int, maildir: Path, *, host: str = "127.0.0.1"
) -> ProcessSpec:
    """The SMTP sink (``chorus_devstack.smtp_sink``) on ``host``, ready once its inbox answers."""
    return ProcessSpec(
        name="smtp-sink",
        argv=[
            sys.executable,
            "-m",
            "chorus_devstack.smtp_sink",
            "--smtp-port",
            str(smtp_port),
            "--http-port",
            str(http_port),
            "--maildir",
            str(maildir),
            "--host",
            host,
        ],
        ready_url=f"http://{host}:{http_port}/healthz",
    )


def mock_openai_spec(port: int, *args: str, host: str = "127.0.0.1") -> ProcessSpec:
    """The mock OpenAI upstream on ``host``; ``args`` are its own flags (fault modes, pacing)."""
    argv = [sys.executable, "-m", "chorus_mock_openai", "--host", host, "--port", str(port)]
    return ProcessSpec(
        name="mock-openai",
        argv=[*argv, *args],
        ready_url=f"http://{host}:{port}/readyz",
    )


def otlp_receiver_spec(port: int, out: Path, *, host: str = "127.0.0.1") -> ProcessSpec:
    """The OTLP/HTTP trace receiver (``chorus_devstack.otlp_receiver``), spans also in ``out``."""
    return ProcessSpec(
        name="otlp-receiver",
        argv=[
            sys.executable,
            "-m",
            "chorus_devstack.otlp_receiver",
            "--host",
            host,
            "--port",
            str(port),
            "--out",
            str(out),
        ],
        ready_url=f"http://{host}:{port}/healthz",
    )


class LocalServer:
    """A server process that can be stopped and started again in place."""

    def __init__(self, spec: ProcessSpec, log_dir: Path) -> None:
        self.process = ManagedProcess(spec, log_dir)

    def start(self) -> None:
        """Start (again) and wait until ready; a server that fails to start is stopped."""
        self.process.start()
        try:
            self.process.wait_ready()
        except BaseException:
            self.process.stop()
            raise

    def stop(self) -> None:
        """Stop gracefully."""
        self.process.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.kill()

    def restart(self) -> None:
        """Stop, then start on the same port and data."""
        self.stop()
        self.start()


class RunningRedis(LocalServer):
    """A Redis server on a free port."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.server = RedisServer(directory / "data", port or free_port())
        super().__init__(self.server.spec(), directory)
        self.url = self.server.url


class RunningGroup:
    """Several server processes started and stopped together; any one can be killed."""

    def __init__(self, specs: list[ProcessSpec], log_dir: Path) -> None:
        self.processes = {spec.name: ManagedProcess(spec, log_dir) for spec in specs}

    def start(self) -> None:
        """Start every process and wait until each is ready."""
        for process in self.processes.values():
            process.start()
        try:
            for process in self.processes.values():
                process.wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process."""
        for process in reversed(list(self.processes.values())):
            process.stop()

    def kill(self, name: str) -> None:
        """SIGKILL one process, as a crash would."""
        self.processes[name].kill()

    def start_again(self, name: str) -> None:
        """Start a stopped or killed process again on its port and data; wait until ready
        (a process still running is left alone)."""
        process = self.processes[name]
        if not process.running():
            process.start()
        process.wait_ready()


class RunningSentinelGroup(RunningGroup):
    """A primary, a replica and three Sentinels on free ports (``REDIS_SENTINELS``)."""

    def __init__(self, directory: Path) -> None:
        self.group = SentinelGroup(
            directory,
            primary_port=free_port(),
            replica_port=free_port(),
            sentinel_ports=(free_port(), free_port(), free_port()),
        )
        super().__init__(self.group.specs(), directory)
        self.sentinels = self.group.sentinels
        self.master = MASTER_NAME

    def start_again(self, name: str) -> None:
        """Start a killed process again; a data server rejoins as the primary's replica."""
        super().start_again(name)
        if name in self.group.servers:
            self.group.rejoin(name)
        self.group.wait_healthy()

    @property
    def env(self) -> dict[str, str]:
        """The services' settings for this group."""
        return {"REDIS_SENTINELS": self.sentinels, "REDIS_SENTINEL_MASTER": self.master}


class RunningRedisCluster(RunningGroup):
    """Three primaries and three replicas on free ports (``REALTIME_REDIS_CLUSTER``)."""

    def __init__(self, directory: Path) -> None:
        self.group = RedisClusterGroup(
            directory,
            ports=tuple(free_port() for _ in range(6)),
            bus_ports=tuple(free_port() for _ in range(6)),
        )
        super().__init__(self.group.specs(), directory)
        self.seeds = self.group.seeds

    def start(self) -> None:
        """Start the nodes and form the cluster (once)."""
        super().start()
        try:
            self.group.form()
        except BaseException:
            self.stop()
            raise


class RunningPostgres(LocalServer):
    """A PostgreSQL server on a free port, with a ``chorus`` database."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.server = EmbeddedPostgres(directory / "data", port or free_port())
        self.server.initdb()
        super().__init__(self.server.spec(), directory)
        self.url = self.server.url

    def start(self) -> None:
        """Start and make sure the default database exists."""
        super().start()
        try:
            self.server.create_database()
        except BaseException:
            self.process.stop()
            raise

    def create_database(self, name: str) -> str:
        """A new empty database on this server; returns its asyncpg URL."""
        return self.server.create_database(name)


class RunningSmtpSink(LocalServer):
    """The SMTP sink on free ports, with helpers to read and steer it."""

    def __init__(self, directory: Path) -> None:
        self.smtp_port = free_port()
        self.http_url = f"http://127.0.0.1:{free_port()}"
        http_port = int(self.http_url.rsplit(":", 1)[1])
        spec = smtp_sink_spec(self.smtp_port, http_port, directory / "mail")
        super().__init__(spec, directory)

    def messages(self) -> list[dict[str, Any]]:
        """Every message received so far, parsed."""
        items: list[dict[str, Any]] = httpx.get(f"{self.http_url}/messages").json()["items"]
        return items

    def clear(self) -> None:
        """Forget received messages."""
        httpx.delete(f"{self.http_url}/messages").raise_for_status()

    def set_mode(self, mode: str, count: int | None = None) -> None:
        """``accept``, ``tempfail`` (451) or ``permfail`` (550), for the next ``count``."""
        body: dict[str, Any] = {"mode": mode}
        if count is not None:
            body["count"] = count
        httpx.post(f"{self.http_url}/mode", json=body).raise_for_status()

    def refusals(self) -> list[dict[str, Any]]:
        """Refused messages so far: ``{"code", "at"}`` (``at`` in ``time.time()`` seconds)."""
        items: list[dict[str, Any]] = httpx.get(f"{self.http_url}/messages").json()["refusals"]
        return items

    def hold(self, stage: str = "rcpt", count: int = 1, seconds: float = 30.0) -> None:
        """Hold the next ``count`` conversations at ``rcpt`` or ``data`` until :meth:`release`."""
        body = {"stage": stage, "count": count, "seconds": seconds}
        httpx.post(f"{self.http_url}/hold", json=body).raise_for_status()

    def release(self) -> None:
        """Let held conversations go on; hold no more."""
        httpx.post(f"{self.http_url}/release").raise_for_status()

    def held(self) -> int:
        """How many conversations are being held right now."""
        held: int = httpx.get(f"{self.http_url}/messages").json()["held"]
        return held


class RunningMockOpenAI(LocalServer):
    """The mock OpenAI upstream on a free port."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        spec = mock_openai_spec(self.port, *args)
        super().__init__(spec, directory)


class RunningOtlpReceiver(LocalServer):
    """The OTLP/HTTP trace receiver on a free port: ``url`` is an exporter's endpoint."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(otlp_receiver_spec(self.port, directory / "spans.jsonl"), directory)

    def spans(self, **filters: str) -> list[dict[str, Any]]:
        """The spans received (``trace_id=``, ``name=``, ``service=`` filter them)."""
        items: list[dict[str, Any]] = httpx.get(f"{self.url}/spans", params=filters).json()["items"]
        return items

    def stats(self) -> dict[str, int]:
        """Export requests and spans received since the start."""
        stats: dict[str, int] = httpx.get(f"{self.url}/stats").json()
        return stats

    def clear(self) -> None:
        """Forget the spans received."""
        httpx.delete(f"{self.url}/spans").raise_for_status()
