"""A Redis Cluster of three primaries and three replicas, on loopback.

Debian's ``redis-server`` 7 (sharded pub/sub needs 7.0). Each node has a client port and
a cluster-bus port of its own (``cluster-port``: both free ports, since a test's ports are
random and ``port + 10000`` may not exist). :meth:`RedisClusterGroup.form` runs
``redis-cli --cluster create … --cluster-replicas 1`` once; a node keeps its place in
``nodes.conf`` in its directory, so a restarted node (or a restarted ``make up``) rejoins
the cluster it was part of.

Fault tools for tests: :meth:`primary_of` (which process serves a key now),
:meth:`wait_for_primary` (a replica took the slots over), :meth:`migrate_slot` (move one
hash slot between primaries, key by key, as ``redis-cli --cluster reshard`` does).
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.crc import key_slot

from chorus_devstack.process import ProcessSpec
from chorus_devstack.redis_server import RedisServer, require_redis_7

__all__ = ["RedisClusterGroup"]


@dataclass(frozen=True)
class RedisClusterGroup:
    """Ports and files of the cluster's six nodes, and how to ask it about itself."""

    state_dir: Path
    ports: tuple[int, ...]
    bus_ports: tuple[int, ...]
    node_timeout_ms: int = 1000

    @property
    def nodes(self) -> dict[str, RedisServer]:
        """The nodes by process name (``redis-cluster-1`` … ``-6``)."""
        return {
            f"redis-cluster-{i}": RedisServer(
                self.state_dir / f"redis-cluster-{i}",
                port,
                name=f"redis-cluster-{i}",
                cluster_port=bus,
                cluster_node_timeout_ms=self.node_timeout_ms,
            )
            for i, (port, bus) in enumerate(zip(self.ports, self.bus_ports, strict=True), 1)
        }

    @property
    def seeds(self) -> str:
        """``REALTIME_REDIS_CLUSTER`` for the services."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def specs(self) -> list[ProcessSpec]:
        """The six nodes (form the cluster once they answer: :meth:`form`)."""
        require_redis_7("the Redis Cluster")
        return [node.spec() for node in self.nodes.values()]

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)

    def _info(self, port: int) -> dict[str, str]:
        with self._client(port) as client:
            info = client.execute_command("CLUSTER INFO")
        if isinstance(info, dict):
            return {str(k): str(v) for k, v in info.items()}
        text = info.decode() if isinstance(info, bytes) else str(info)
        return dict(line.strip().partition(":")[::2] for line in text.splitlines() if ":" in line)

    def form(self, timeout: float = 60.0) -> None:
        """Create the cluster (unless the nodes already form one) and wait until it serves."""
        if self._info(self.ports[0]).get("cluster_known_nodes") == "1":
            result = subprocess.run(  # noqa: S603 - our own binary and ports
                [
                    str(Path(require_redis_7("the Redis Cluster")).with_name("redis-cli")),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
            if result.returncode != 0:
                msg = f"redis-cli --cluster create failed:\n{result.stdout}{result.stderr}"
                raise RuntimeError(msg)
        self.wait_healthy(timeout)

    def healthy(self) -> bool:
        """Every node says the cluster is ok and knows all six, three primaries serve, and
        every replica is in sync with its primary (else a failover could lose writes)."""
        try:
            infos = [self._info(port) for port in self.ports]
            replication = [self._replication(port) for port in self.ports]
        except (redis.RedisError, OSError):
            return False
        return all(
            info.get("cluster_state") == "ok"
            and info.get("cluster_known_nodes") == str(len(self.ports))
            and info.get("cluster_size") == str(len(self.ports) // 2)
            for info in infos
        ) and all(
            state.get("role") == "master" or state.get("master_link_status") == "up"
            for state in replication
        )

    def _replication(self, port: int) -> dict[str, str]:
        with self._client(port) as client:
            info = client.info("replication")
        return {str(k): str(v) for k, v in info.items()}

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until :meth:`healthy`."""
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                msg = f"the Redis Cluster is not healthy after {timeout}s"
                raise TimeoutError(msg)
            time.sleep(0.1)

    def slot_owners(self) -> dict[int, int]:
        """Slot → port of the primary serving it, as a live node sees it."""
        for port in self.ports:
            try:
                with self._client(port) as client:
                    ranges = client.execute_command("CLUSTER SLOTS")
            except (redis.RedisError, OSError):
                continue
            owners: dict[int, int] = {}
            for start, end, primary, *_ in ranges:
                for slot in range(int(start), int(end) + 1):
                    owners[slot] = int(primary[1])
            return owners
        msg = "no cluster node answers"
        raise RuntimeError(msg)

    def name_of(self, port: int) -> str:
        """The process name of the node on ``port``."""
        return next(name for name, node in self.nodes.items() if node.port == port)

    def primary_of(self, key: str) -> str:
        """The process name of the primary that serves ``key`` now."""
        return self.name_of(self.slot_owners()[key_slot(key.encode())])

    def primaries(self) -> list[str]:
        """Process names of the primaries now."""
        return sorted({self.name_of(port) for port in self.slot_owners().values()})

    def wait_for_primary(self, key: str, *, other_than: str, timeout: float = 60.0) -> float:
        """Wait until a node other than ``other_than`` serves ``key``'s slot and the cluster
        is ok again; returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                owner = self.primary_of(key)
                if owner != other_than:
                    port = self.nodes[owner].port
                    if self._info(port).get("cluster_state") == "ok":
                        return time.monotonic() - started
            except (redis.RedisError, OSError, RuntimeError, KeyError):
                pass
            time.sleep(0.05)
        msg = f"no node took over {key!r} within {timeout}s"
        raise TimeoutError(msg)

    def migrate_slot(self, slot: int, to: str, *, batch: int = 10) -> int:
        """Move ``slot`` to the primary ``to``, ``batch`` keys per MIGRATE; returns the keys
        moved. The procedure of the cluster specification: IMPORTING on the target,
        MIGRATING on the source, MIGRATE the keys, then SETSLOT NODE on both."""
        source_port = self.slot_owners()[slot]
        target_port = self.nodes[to].port
        if source_port == target_port:
            return 0
        with self._client(source_port) as source, self._client(target_port) as target:
            source_id = source.execute_command("CLUSTER MYID").decode()
            target_id = target.execute_command("CLUSTER MYID").decode()
            target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
            source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
            moved = 0
            while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, batch):
                source.execute_command(
                    "MIGRATE", "127.0.0.1", target_port, "", 0, 5000, "KEYS", *keys
                )
                moved += len(keys)
            target.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
            source.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        # The other primaries learn the new owner from the bus; tell them at once.
        for name in self.primaries():
            port = self.nodes[name].port
            if port not in (source_port, target_port):
                with self._client(port) as other:
                    other.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
        return moved
