"""A Redis Sentinel group: one primary, one replica and three Sentinels, on loopback.

The shape operators run in production (and the chart's ``redis.mode: sentinel``): the
services find the primary through the Sentinels (``REDIS_SENTINELS``), and when it dies
the Sentinels agree (quorum 2 of 3) and promote the replica. Every process keeps its
configuration in its own directory, which Sentinel rewrites as the group changes, so a
killed server restarted in place rejoins in the role the group gave it.

``down_after_ms`` is how long the primary must be silent before a Sentinel calls it down:
1 s here (tests measure recovery), 5-30 s in production.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis

from chorus_devstack.process import ProcessSpec
from chorus_devstack.redis_server import RedisServer, require_redis_7

__all__ = ["MASTER_NAME", "SentinelGroup"]

#: The name the Sentinels monitor the primary under (``REDIS_SENTINEL_MASTER``).
MASTER_NAME = "chorus"


@dataclass(frozen=True)
class SentinelGroup:
    """Ports and files of the group's five processes, and how to ask it about itself."""

    state_dir: Path
    primary_port: int
    replica_port: int
    sentinel_ports: tuple[int, int, int]
    down_after_ms: int = 1000
    failover_timeout_ms: int = 10_000

    @property
    def servers(self) -> dict[str, RedisServer]:
        """The two data servers by process name (``redis`` starts as the primary)."""
        return {
            "redis": RedisServer(
                self.state_dir / "redis", self.primary_port, name="redis", config_file=True
            ),
            "redis-replica": RedisServer(
                self.state_dir / "redis-replica",
                self.replica_port,
                name="redis-replica",
                replica_of=self.primary_port,
                config_file=True,
            ),
        }

    @property
    def sentinels(self) -> str:
        """``REDIS_SENTINELS`` for the services."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def sentinel_names(self) -> list[str]:
        """Process names of the Sentinels."""
        return [f"sentinel-{i}" for i in range(1, len(self.sentinel_ports) + 1)]

    def specs(self) -> list[ProcessSpec]:
        """The data servers (the primary first), then the Sentinels."""
        binary = require_redis_7("the Sentinel group")
        specs = [server.spec() for server in self.servers.values()]
        for name, port in zip(self.sentinel_names(), self.sentinel_ports, strict=True):
            directory = self.state_dir / name
            directory.mkdir(parents=True, exist_ok=True)
            conf = directory / "sentinel.conf"
            if not conf.exists():  # Sentinel rewrites it with what it learns: keep that
                conf.write_text(self._sentinel_conf(port, directory))
            specs.append(
                ProcessSpec(
                    name=name,
                    argv=[binary, str(conf), "--sentinel"],
                    ready_check=partial(self._sentinel_ready, port),
                )
            )
        return specs

    def _sentinel_conf(self, port: int, directory: Path) -> str:
        return "".join(
            line + "\n"
            for line in (
                f"port {port}",
                "bind 127.0.0.1",
                "protected-mode no",
                "daemonize no",
                "loglevel warning",
                f"dir {directory}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}",
                f"sentinel parallel-syncs {MASTER_NAME} 1",
            )
        )

    def _sentinel_ready(self, port: int) -> bool:
        """This Sentinel sees a primary, its replica, and the two other Sentinels.

        Until it knows the others it could not take part in a failover's vote, so a test
        that kills the primary before then would wait for nothing.
        """
        try:
            with redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1) as client:
                state = client.sentinel_master(MASTER_NAME)
                replicas = client.sentinel_slaves(MASTER_NAME)
        except (redis.RedisError, OSError):
            return False
        linked = [
            r
            for r in replicas
            if not r.get("is_sdown")
            and not r.get("is_disconnected")
            and r.get("master-link-status") == "ok"
        ]
        return (
            bool(state.get("is_master"))
            and not state.get("is_sdown")
            and len(linked) >= 1
            and int(state.get("num-other-sentinels", 0)) >= len(self.sentinel_ports) - 1
        )

    def primary(self) -> int:
        """The port of the server the Sentinels name primary now (ask a live one)."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1) as client:
                    _, primary = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, OSError, TypeError):
                continue
            return int(primary)
        msg = "no Sentinel answers"
        raise RuntimeError(msg)

    def primary_name(self) -> str:
        """The process name of the current primary (``redis`` or ``redis-replica``)."""
        port = self.primary()
        return next(name for name, s in self.servers.items() if s.port == port)

    def wait_for_primary(self, *, other_than: int, timeout: float = 60.0) -> float:
        """Wait until the Sentinels name a primary other than ``other_than`` and it answers
        as one; returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                port = self.primary()
                if port != other_than:
                    with redis.Redis(port=port, socket_timeout=1) as client:
                        if client.execute_command("ROLE")[0] == b"master":
                            return time.monotonic() - started
            except (redis.RedisError, OSError, RuntimeError):
                pass
            time.sleep(0.05)
        msg = f"no new primary within {timeout}s"
        raise TimeoutError(msg)

    def rejoin(self, name: str) -> None:
        """Make a restarted server a replica of the current primary at once (``REPLICAOF``).

        Sentinel would do the same, but only when its next ``INFO`` poll (every 10 s)
        notices the old primary is back; tests should not wait for that.
        """
        primary = self.primary()
        server = self.servers[name]
        if server.port == primary:
            return
        with redis.Redis(port=server.port, socket_timeout=2) as client:
            client.execute_command("REPLICAOF", "127.0.0.1", primary)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every Sentinel sees a primary with a replica in sync, and its peers
        (after a failover: until the restarted old primary serves as the new one's replica)."""
        deadline = time.monotonic() + timeout
        while not all(self._sentinel_ready(port) for port in self.sentinel_ports):
            if time.monotonic() > deadline:
                msg = f"the Sentinel group is not whole after {timeout}s"
                raise TimeoutError(msg)
            time.sleep(0.1)
