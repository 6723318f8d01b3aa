"""The site: what an operator and the world around the cluster give a Chorus install.

A real install needs things the chart does not create, and every user provides them through
the chart's values or out of band. chart-run provides the same, visibly:

- the world outside the cluster, on TEST-NET-1 addresses with ``.test`` names the pods
  resolve as upstream DNS would: an SMTP relay (the devstack's SMTP sink,
  ``smtp.chorus.test:25``), an OpenAI-compatible provider (the mock upstream,
  ``llm.chorus.test``), and, when the values turn the bundled databases off, a managed
  Postgres (``postgres.chorus.test``, password auth) and Redis (``redis.chorus.test``,
  ``requirepass``);
- values layered last over the chosen values files (:meth:`Site.values`): the SMTP relay
  (``worker.smtp``) and the provider (``secrets.llmProviders``) — the only way the services
  learn about either;
- objects applied before any pod starts (:meth:`Site.objects`): the ``existingSecret`` the
  values name, with the documented keys; a certificate for every TLS Secret an Ingress names
  (as cert-manager would issue it, from a CA of the run); the shared Gateway
  ``gateway-system/public`` (listeners ``http`` and ``https``) HTTPRoutes attach to.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncpg
import trustme
import yaml

from chorus_chartrun.network import Network
from chorus_chartrun.release import Obj, Release
from chorus_devstack.postgres import SUPERUSER, EmbeddedPostgres
from chorus_devstack.process import ManagedProcess, ProcessSpec
from chorus_devstack.redis_server import RedisServer
from chorus_devstack.servers import mock_openai_spec, smtp_sink_spec

__all__ = ["GATEWAY", "Site"]

SMTP_HOST = "smtp.chorus.test"
LLM_HOST = "llm.chorus.test"
POSTGRES_HOST = "postgres.chorus.test"
REDIS_HOST = "redis.chorus.test"
#: The shared Gateway HTTPRoutes attach to (namespace, name).
GATEWAY = ("gateway-system", "public")
#: The provider's models: the assistant alias the worker asks for by default, and a model.
MODELS = {"mock-gpt": "mock-gpt", "mock-gpt-mini": "mock-gpt-mini", "assistant": "mock-gpt"}


def _secret(name: str, namespace: str, data: Mapping[str, bytes], kind: str = "Opaque") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"chart-run/provided-by": "site"},
        },
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


@dataclass
class Outside:
    """A server outside the cluster."""

    name: str
    host: str
    ip: str
    ports: dict[str, int]
    process: ManagedProcess


@dataclass
class Site:
    """The site of one run, under ``directory``."""

    directory: Path
    network: Network
    ca: trustme.CA = field(default_factory=trustme.CA)
    servers: dict[str, Outside] = field(default_factory=dict)
    external_postgres: bool = False
    external_redis: bool = False
    postgres_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    redis_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    gateway_key: str = field(default_factory=lambda: secrets.token_urlsafe(36))

    @property
    def outside(self) -> dict[str, str]:
        """Outside names → addresses (the pods' upstream DNS)."""
        return {s.host: s.ip for s in self.servers.values()}

    @property
    def ca_path(self) -> Path:
        """The run's CA certificate (clients trust it for the ingress's TLS hosts)."""
        return self.directory / "ca.pem"

    def plan(self, values: Mapping[str, Any]) -> None:
        """Decide what the install needs from the effective (merged) values."""
        self.external_postgres = not values.get("postgres", {}).get("enabled", True)
        self.external_redis = not values.get("redis", {}).get("enabled", True)

    def values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The site's values: the SMTP relay, and the provider unless an existing Secret has it."""
        layer: dict[str, Any] = {}
        if "smtp" in values.get("worker", {}):
            layer["worker"] = {"smtp": {"host": SMTP_HOST, "port": 25, "starttls": False}}
        secrets = values.get("secrets", {})
        if "llmProviders" in secrets and not secrets.get("existingSecret"):
            layer["secrets"] = {"llmProviders": self._providers()}
        return layer

    def _providers(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "openai",
                "base_url": f"http://{LLM_HOST}/v1",
                "api_key": "site-provider-key",
                "models": MODELS,
            }
        ]

    async def _serve(self, name: str, host: str, spec_of: Any, ports: dict[str, int]) -> Outside:
        ip = await self.network.outside_ip()
        spec: ProcessSpec = spec_of(ip)
        process = ManagedProcess(spec, self.directory / "logs")
        process.start()
        await asyncio.to_thread(process.wait_ready)
        server = Outside(name, host, ip, ports, process)
        self.servers[name] = server
        return server

    async def start(self) -> None:
        """Start the outside servers the plan needs."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        await self._serve(
            "smtp",
            SMTP_HOST,
            lambda ip: smtp_sink_spec(25, 8025, self.directory / "mail", host=ip),
            {"smtp": 25, "http": 8025},
        )
        await self._serve(
            "llm",
            LLM_HOST,
            lambda ip: replace(mock_openai_spec(80, host=ip), name="llm-provider"),
            {"http": 80},
        )
        if self.external_postgres:
            await self._start_postgres()
        if self.external_redis:

            def redis_spec(ip: str) -> ProcessSpec:
                server = RedisServer(
                    self.directory / "redis",
                    6379,
                    bind=(ip, "127.0.0.1"),
                    password=self.redis_password,
                )
                return replace(server.spec(), name="managed-redis")

            await self._serve("redis", REDIS_HOST, redis_spec, {"redis": 6379})

    async def _start_postgres(self) -> None:
        holder: dict[str, EmbeddedPostgres] = {}

        def postgres_spec(ip: str) -> ProcessSpec:
            server = EmbeddedPostgres(self.directory / "postgres", 5432, listen=(ip, "127.0.0.1"))
            server.initdb()
            # A managed database: passwords over the network; the superuser only locally.
            (server.data_dir / "pg_hba.conf").write_text(
                "local all all trust\n"
                f"host all {SUPERUSER} 127.0.0.1/32 trust\n"
                "host all all 0.0.0.0/0 scram-sha-256\n"
            )
            holder["server"] = server
            return replace(server.spec(), name="managed-postgres")

        await self._serve("postgres", POSTGRES_HOST, postgres_spec, {"postgres": 5432})
        connection = await asyncpg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:5432/postgres")
        try:
            password = self.postgres_password.replace("'", "''")
            await connection.execute(f"CREATE ROLE chorus LOGIN PASSWORD '{password}'")
            await connection.execute("CREATE DATABASE chorus OWNER chorus")
        finally:
            await connection.close()

    def objects(self, release: Release) -> list[Obj]:
        """What the operator applies before installing: Secrets, certificates, the Gateway."""
        found: list[Obj] = []
        namespace = release.namespace
        existing = release.values.get("secrets", {}).get("existingSecret")
        if existing:
            found.append(_secret(existing, namespace, self._existing_secret_data()))
        for ingress in release.of_kind("Ingress"):
            for tls in ingress["spec"].get("tls") or []:
                name = tls.get("secretName")
                if name and release.get("Secret", name) is None:
                    found.append(self._certificate(name, namespace, tls.get("hosts") or []))
        routes = release.of_kind("HTTPRoute")
        if routes:
            hostnames = sorted({h for r in routes for h in r["spec"].get("hostnames") or []})
            gateway_ns, gateway_name = GATEWAY
            cert = f"{gateway_name}-gateway-tls"
            found.append(self._certificate(cert, gateway_ns, hostnames or ["*.chorus.test"]))
            found.append(
                {
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "Gateway",
                    "metadata": {"name": gateway_name, "namespace": gateway_ns},
                    "spec": {
                        "gatewayClassName": "chart-run-nginx",
                        "listeners": [
                            {
                                "name": "http",
                                "port": 80,
                                "protocol": "HTTP",
                                "allowedRoutes": {"namespaces": {"from": "All"}},
                            },
                            {
                                "name": "https",
                                "port": 443,
                                "protocol": "HTTPS",
                                "tls": {"mode": "Terminate", "certificateRefs": [{"name": cert}]},
                                "allowedRoutes": {"namespaces": {"from": "All"}},
                            },
                        ],
                    },
                }
            )
        return found

    def _certificate(self, name: str, namespace: str, hosts: list[str]) -> Obj:
        issued = self.ca.issue_cert(*(hosts or ["chorus.test"]))
        chain = b"".join(blob.bytes() for blob in issued.cert_chain_pems)
        data = {
            "tls.crt": chain,
            "tls.key": issued.private_key_pem.bytes(),
            "ca.crt": self.ca.cert_pem.bytes(),
        }
        return _secret(name, namespace, data, kind="kubernetes.io/tls")

    def _existing_secret_data(self) -> dict[str, bytes]:
        """The keys the chart documents for ``secrets.existingSecret``."""
        database = (
            f"postgresql://chorus:{self.postgres_password}@{POSTGRES_HOST}:5432/chorus"
            if self.external_postgres
            else ""
        )
        redis = f"redis://:{self.redis_password}@{REDIS_HOST}:6379/0" if self.external_redis else ""
        data = {
            "DATABASE_URL": database.encode(),
            "REDIS_URL": redis.encode(),
            "JWT_SECRET": secrets.token_urlsafe(48).encode(),
            "GATEWAY_API_KEYS": f"worker:{self.gateway_key}".encode(),
            "LLM_GATEWAY_API_KEY": self.gateway_key.encode(),
            # SMTP_USERNAME and SMTP_PASSWORD are optional: the site's relay takes no login.
            "llm-providers.yaml": yaml.safe_dump(self._providers()).encode(),
        }
        return {k: v for k, v in data.items() if v}

    def default_certificate(self) -> tuple[bytes, bytes]:
        """The ingress's certificate for unknown hosts (ingress-nginx's fake certificate)."""
        issued = self.ca.issue_cert("ingress.local")
        return b"".join(b.bytes() for b in issued.cert_chain_pems), issued.private_key_pem.bytes()

    def describe(self) -> dict[str, Any]:
        """The outside servers, for the status and the banner."""
        return {
            s.name: {"host": s.host, "ip": s.ip, "ports": s.ports} for s in self.servers.values()
        }

    def stop(self) -> None:
        """Stop the outside servers."""
        for server in reversed(list(self.servers.values())):
            server.process.stop()
