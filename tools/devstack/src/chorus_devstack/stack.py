"""The whole Chorus system as local processes: what ``make up`` and the e2e tests run.

Start order follows the dependencies: Postgres, Redis, the SMTP sink, the mock OpenAI
upstream and, with tracing on, the OTLP receiver (in parallel); the schema migration;
the four services (realtime and, if asked, the gateway as several replicas); nginx as
the ingress; Prometheus when asked. Every process is waited on through its readiness
probe; :meth:`Stack.stop` stops them in reverse order and nothing outlives the stack.

Redis runs in one of three modes (``StackOptions.redis_mode``, ``make up REDIS_MODE=…``):
``standalone`` (one server, the default), ``sentinel`` (a primary, a replica and three
Sentinels: the services get ``REDIS_SENTINELS``) or ``cluster`` (one server for the queue,
limits and locks, and a Redis Cluster of three primaries and three replicas for the
channels: ``REALTIME_REDIS_CLUSTER``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from chorus_devstack.nginx import nginx_binary, nginx_spec, render_nginx_conf
from chorus_devstack.ports import free_port
from chorus_devstack.postgres import EmbeddedPostgres
from chorus_devstack.process import ManagedProcess, ProcessDiedError, ProcessSpec
from chorus_devstack.prometheus import prometheus_spec, render_prometheus_config
from chorus_devstack.redis_cluster import RedisClusterGroup
from chorus_devstack.redis_sentinel import MASTER_NAME, SentinelGroup
from chorus_devstack.redis_server import RedisServer
from chorus_devstack.routes import load_routes, repo_root
from chorus_devstack.servers import mock_openai_spec, otlp_receiver_spec, smtp_sink_spec

__all__ = ["GATEWAY_API_KEY", "REDIS_MODES", "Ports", "Stack", "StackOptions"]

logger = logging.getLogger("chorus.devstack")

#: The key the worker presents to the gateway in the devstack (a service credential).
GATEWAY_API_KEY = "chorus-dev-worker-key"
#: How Redis runs (see the module).
REDIS_MODES = ("standalone", "sentinel", "cluster")


@dataclass(frozen=True)
class Ports:
    """Where each process listens. The defaults are the documented local ports."""

    ingress: int = 8080
    api: int = 8001
    realtime: tuple[int, ...] = (8002, 8012)
    gateway: tuple[int, ...] = (8003, 8013)
    worker: int = 8004
    mock_openai: int = 8090
    smtp: int = 8025
    smtp_http: int = 8026
    prometheus: int = 9090
    postgres: int = 15432
    redis: int = 16379
    #: The Sentinel group's replica and Sentinels (redis_mode "sentinel").
    redis_replica: int = 16380
    sentinels: tuple[int, int, int] = (16479, 16480, 16481)
    #: The Redis Cluster's nodes and their cluster-bus ports (redis_mode "cluster").
    cluster: tuple[int, ...] = (17001, 17002, 17003, 17004, 17005, 17006)
    cluster_bus: tuple[int, ...] = (18001, 18002, 18003, 18004, 18005, 18006)
    otlp: int = 4318

    @classmethod
    def free(cls) -> Ports:
        """Fresh ports for a test run, so parallel runs never collide."""
        return cls(
            ingress=free_port(),
            api=free_port(),
            realtime=(free_port(), free_port(), free_port()),
            gateway=(free_port(), free_port(), free_port()),
            worker=free_port(),
            mock_openai=free_port(),
            smtp=free_port(),
            smtp_http=free_port(),
            prometheus=free_port(),
            postgres=free_port(),
            redis=free_port(),
            redis_replica=free_port(),
            sentinels=(free_port(), free_port(), free_port()),
            cluster=tuple(free_port() for _ in range(6)),
            cluster_bus=tuple(free_port() for _ in range(6)),
            otlp=free_port(),
        )


@dataclass
class StackOptions:
    """What to run and where."""

    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    realtime_replicas: int = 2
    gateway_replicas: int = 1
    #: None: run nginx when it is installed.
    nginx: bool | None = None
    prometheus: bool = False
    #: External servers: when set, no local Postgres / Redis is started.
    database_url: str | None = None
    redis_url: str | None = None
    #: ``standalone``, ``sentinel`` or ``cluster`` (see the module); local servers only.
    redis_mode: str = "standalone"
    #: A real ``LLM_PROVIDERS`` value; when set, the mock upstream is not started.
    llm_providers: str | None = None
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    log_level: str = "INFO"
    #: Settings every service gets, set once: the shared names (``ARQ_QUEUE_NAME``,
    #: ``HISTORY_SIZE``, ``HISTORY_TTL``...) must have one value across the system.
    shared_env: Mapping[str, str] = field(default_factory=dict)
    #: Extra environment per process name (``api``, ``realtime``, ``worker``...).
    extra_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: Trade crash safety for speed (tests): Postgres without fsync.
    fast_storage: bool = True
    #: Alert rule files Prometheus loads (when ``prometheus`` is on).
    rule_files: tuple[Path, ...] = ()
    #: Run the OTLP receiver and have every service export its spans to it.
    tracing: bool = False
    #: ``OTEL_TRACES_SAMPLER`` and ``…_ARG`` of every service when tracing.
    tracing_sampler: str = "parentbased_always_on"
    tracing_ratio: float | None = None


class Stack:
    """The running system. Use as a context manager, or call start/stop."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.root = repo_root()
        self.state_dir = options.state_dir.resolve()
        self.log_dir = self.state_dir / "logs"
        self.processes: dict[str, ManagedProcess] = {}
        ports = options.ports
        self.postgres = (
            None
            if options.database_url
            else EmbeddedPostgres(self.state_dir / "postgres", ports.postgres)
        )
        if options.redis_mode not in REDIS_MODES:
            msg = f"redis_mode is one of {', '.join(REDIS_MODES)}, not {options.redis_mode!r}"
            raise ValueError(msg)
        sentinel = options.redis_mode == "sentinel" and not options.redis_url
        self.redis = (
            None
            if options.redis_url or sentinel
            else RedisServer(self.state_dir / "redis", ports.redis)
        )
        #: The Sentinel group (redis_mode "sentinel").
        self.sentinel = (
            SentinelGroup(
                self.state_dir / "sentinel",
                primary_port=ports.redis,
                replica_port=ports.redis_replica,
                sentinel_ports=ports.sentinels,
            )
            if sentinel
            else None
        )
        #: The Redis Cluster the channels live on (redis_mode "cluster").
        self.cluster = (
            RedisClusterGroup(
                self.state_dir / "cluster", ports=ports.cluster, bus_ports=ports.cluster_bus
            )
            if options.redis_mode == "cluster"
            else None
        )
        self.with_nginx = options.nginx if options.nginx is not None else bool(nginx_binary())

    # -- addresses -------------------------------------------------------------------------

    @property
    def database_url(self) -> str:
        """The ``DATABASE_URL`` every service gets."""
        if self.options.database_url:
            return self.options.database_url
        assert self.postgres is not None
        return self.postgres.url

    @property
    def redis_url(self) -> str:
        """The ``REDIS_URL`` every service gets (in sentinel mode: the first primary's)."""
        if self.options.redis_url:
            return self.options.redis_url
        if self.sentinel is not None:
            return f"redis://127.0.0.1:{self.sentinel.primary_port}/0"
        assert self.redis is not None
        return self.redis.url

    def redis_env(self) -> dict[str, str]:
        """Where Redis is, in the services' setting names, for this stack's mode."""
        if self.sentinel is not None:
            env = {"REDIS_SENTINELS": self.sentinel.sentinels, "REDIS_SENTINEL_MASTER": MASTER_NAME}
        else:
            env = {"REDIS_URL": self.redis_url}
        if self.cluster is not None:
            env["REALTIME_REDIS_CLUSTER"] = self.cluster.seeds
            # Rooms' access lists need one Redis: on a cluster every room is open.
            env["PRIVATE_ROOMS"] = "false"
        return env

    def url(self, name: str) -> str:
        """Base URL of a process by name (``api``, ``realtime-1``, ``ingress``...)."""
        ports = self.options.ports
        if name == "ingress":
            return f"http://127.0.0.1:{ports.ingress}"
        fixed = {
            "api": ports.api,
            "worker": ports.worker,
            "mock-openai": ports.mock_openai,
            "smtp-sink": ports.smtp_http,
            "prometheus": ports.prometheus,
            "otlp-receiver": ports.otlp,
        }
        if name in fixed:
            return f"http://127.0.0.1:{fixed[name]}"
        base, _, index = name.rpartition("-")
        replica_ports = {"realtime": ports.realtime, "llm-gateway": ports.gateway}
        if base in replica_ports and index.isdigit():
            return f"http://127.0.0.1:{replica_ports[base][int(index) - 1]}"
        msg = f"no URL for {name!r}"
        raise KeyError(msg)

    @property
    def public_url(self) -> str:
        """Where clients go: the ingress when nginx runs, else the api directly."""
        return self.url("ingress") if self.with_nginx else self.url("api")

    def replicas(self, service: str) -> list[str]:
        """Process names of a replicated service (``realtime-1``, ``realtime-2``)."""
        count = {
            "realtime": self.options.realtime_replicas,
            "llm-gateway": self.options.gateway_replicas,
        }[service]
        return [f"{service}-{i}" for i in range(1, count + 1)]

    # -- environment of each process -------------------------------------------------------

    def _llm_providers(self) -> str:
        if self.options.llm_providers:
            return self.options.llm_providers
        return json.dumps(
            {
                "providers": [
                    {
                        "name": "mock",
                        "base_url": f"{self.url('mock-openai')}/v1",
                        "api_key": "mock-key",
                        "models": ["mock-gpt", "mock-gpt-mini"],
                        # Per 1M tokens, so virtual keys' budgets and spend have numbers.
                        "prices": {
                            "mock-gpt": {"input": 2.5, "output": 10.0, "cached_input": 1.25},
                            "mock-gpt-mini": {"input": 0.15, "output": 0.6},
                        },
                    }
                ],
                # The worker asks for ``assistant`` (ASSISTANT_MODEL); this says who answers.
                "aliases": {"assistant": "mock-gpt"},
            }
        )

    def _tracing_env(self) -> dict[str, str]:
        """The standard OTEL_* variables: spans to the receiver, exported within 0.2 s."""
        if not self.options.tracing:
            return {}
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.url("otlp-receiver"),
            "OTEL_TRACES_SAMPLER": self.options.tracing_sampler,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        if self.options.tracing_ratio is not None:
            env["OTEL_TRACES_SAMPLER_ARG"] = str(self.options.tracing_ratio)
        return env

    def env_for(self, name: str) -> dict[str, str]:
        """The environment a process gets: the services' setting names, this stack's addresses."""
        service = name.rpartition("-")[0] if name[-1].isdigit() else name
        port = self.url(name).rsplit(":", 1)[1]
        env = {
            "ENV": "dev",
            "LOG_LEVEL": self.options.log_level,
            "LOG_FORMAT": "console",
            "PYTHONUNBUFFERED": "1",
            "HOST": "127.0.0.1",
            "PORT": port,
            **self.redis_env(),
            "JWT_SECRET": self.options.jwt_secret,
            "JWT_ISSUER": "chorus",
            **self.options.shared_env,
            **self._tracing_env(),
        }
        gateway = self.url("ingress") if self.with_nginx else self.url("llm-gateway-1")
        per_service: dict[str, dict[str, str]] = {
            "api": {"DATABASE_URL": self.database_url},
            "realtime": {"INSTANCE_ID": name},
            "llm-gateway": {
                "LLM_PROVIDERS": self._llm_providers(),
                "GATEWAY_API_KEYS": f"worker:{GATEWAY_API_KEY}",
            },
            "worker": {
                "DATABASE_URL": self.database_url,
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(self.options.ports.smtp),
                "SMTP_FROM": "Chorus <no-reply@chorus.localhost>",
                "LLM_GATEWAY_URL": gateway,
                "LLM_GATEWAY_API_KEY": GATEWAY_API_KEY,
                "APP_URL": self.url("ingress"),
                # Below the devstack's 15 s stop timeout: `make down` lets running jobs end.
                "JOB_COMPLETION_WAIT": "10",
            },
        }
        env.update(per_service.get(service, {}))
        env.update(self.options.extra_env.get(service, {}))
        env.update(self.options.extra_env.get(name, {}))
        return env

    # -- process specs ---------------------------------------------------------------------

    def _python(self, name: str, module: str, *args: str) -> ProcessSpec:
        return ProcessSpec(
            name=name,
            argv=[sys.executable, "-m", module, *args],
            env=self.env_for(name),
            cwd=self.root,
            ready_url=f"{self.url(name)}/readyz",
        )

    def _infra_specs(self) -> list[ProcessSpec]:
        ports = self.options.ports
        specs: list[ProcessSpec] = []
        if self.postgres is not None:
            self.postgres.initdb()
            specs.append(self.postgres.spec(durable=not self.options.fast_storage))
        if self.redis is not None:
            specs.append(self.redis.spec())
        if self.sentinel is not None:
            specs += self.sentinel.specs()
        if self.cluster is not None:
            specs += self.cluster.specs()
        specs.append(smtp_sink_spec(ports.smtp, ports.smtp_http, self.state_dir / "mail"))
        if not self.options.llm_providers:
            specs.append(mock_openai_spec(ports.mock_openai))
        if self.options.tracing:
            specs.append(otlp_receiver_spec(ports.otlp, self.state_dir / "spans.jsonl"))
        return specs

    def service_specs(self) -> list[ProcessSpec]:
        """The four services, replicas included."""
        specs = [self._python("api", "chorus_api")]
        specs += [self._python(n, "chorus_realtime") for n in self.replicas("realtime")]
        specs += [self._python(n, "chorus_gateway") for n in self.replicas("llm-gateway")]
        specs.append(self._python("worker", "chorus_worker"))
        return specs

    def _nginx_spec(self) -> ProcessSpec:
        ports = self.options.ports
        upstreams = {
            "api": [f"127.0.0.1:{ports.api}"],
            "realtime": [self.url(n).removeprefix("http://") for n in self.replicas("realtime")],
            "llm-gateway": [
                self.url(n).removeprefix("http://") for n in self.replicas("llm-gateway")
            ],
        }
        conf = render_nginx_conf(
            routes=load_routes(self.root / "deploy/helm/chorus/files/routes.yaml"),
            upstreams=upstreams,
            listen=f"127.0.0.1:{ports.ingress}",
            prefix=self.state_dir / "nginx",
        )
        return nginx_spec(
            self.state_dir / "nginx", conf, ready_url=f"{self.url('ingress')}/api/openapi.json"
        )

    def _prometheus_spec(self) -> ProcessSpec:
        def address(name: str) -> str:
            return self.url(name).removeprefix("http://")

        # Job names as the chart's ServiceMonitor sets them, so the same rules and
        # dashboard queries work here and in a cluster.
        targets = {
            "chorus-api": [address("api")],
            "chorus-realtime": [address(n) for n in self.replicas("realtime")],
            "chorus-llm-gateway": [address(n) for n in self.replicas("llm-gateway")],
            "chorus-worker": [address("worker")],
        }
        config = render_prometheus_config(targets=targets, rule_files=self.options.rule_files)
        return prometheus_spec(
            self.state_dir / "prometheus", config, port=self.options.ports.prometheus
        )

    # -- running ---------------------------------------------------------------------------

    def _launch(self, specs: list[ProcessSpec]) -> None:
        started = []
        for spec in specs:
            process = ManagedProcess(spec, self.log_dir)
            self.processes[spec.name] = process
            process.start()
            started.append(process)
        for process in started:
            process.wait_ready()

    def migrate(self) -> None:
        """Upgrade the schema (``python -m chorus_api migrate``), as the chart's Job does."""
        result = subprocess.run(
            [sys.executable, "-m", "chorus_api", "migrate"],
            env={**os.environ, **self.env_for("api")},
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        (self.log_dir / "migrate.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            msg = f"migration failed:\n{result.stdout}{result.stderr}"
            raise ProcessDiedError(msg)

    def start(self) -> None:
        """Start everything and wait until every process is ready."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._launch(self._infra_specs())
            if self.cluster is not None:
                self.cluster.form()
            if self.postgres is not None:
                self.postgres.create_database()
            self.migrate()
            self._launch(self.service_specs())
            if self.with_nginx:
                self._launch([self._nginx_spec()])
            if self.options.prometheus:
                self._launch([self._prometheus_spec()])
        except BaseException:
            self.stop()
            raise
        self.write_state()

    def stop(self) -> None:
        """Stop every process, newest first."""
        for process in reversed(list(self.processes.values())):
            process.stop()
        state = self.state_dir / "state.json"
        state.unlink(missing_ok=True)

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_state(self) -> None:
        """Record pids so ``make down`` can stop a stack started elsewhere."""
        state = {
            "pid": os.getpid(),
            "children": {n: p.pid for n, p in self.processes.items() if p.pid is not None},
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))

    def died(self) -> Iterator[ManagedProcess]:
        """Processes that exited without being asked to."""
        for process in self.processes.values():
            if not process.expected_exit and not process.running():
                yield process

    # -- fault injection (tests) -----------------------------------------------------------

    def restart(self, name: str, *, kill: bool = False) -> None:
        """Stop (or SIGKILL) a process and start it again with the same spec."""
        process = self.processes[name]
        if kill:
            process.kill()
        else:
            process.stop()
        self.start_again(name)

    def start_again(self, name: str) -> None:
        """Start a stopped process again and wait until it is ready."""
        process = self.processes[name]
        process.start()
        process.wait_ready()
        self.write_state()

    def logs(self, *names: str, lines: int = 60) -> str:
        """Log tails of the named processes (all when none named), for failure reports."""
        chosen = names or tuple(self.processes)
        return "\n".join(
            f"===== {n} =====\n{self.processes[n].tail(lines)}"
            for n in chosen
            if n in self.processes
        )
