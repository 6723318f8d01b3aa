"""The ingress controller: nginx, configured from :mod:`chorus_chartrun.routing`'s servers.

Like ingress-nginx, nginx proxies straight to the Service's ready endpoints (pod addresses),
not through the ClusterIP, with its defaults (HTTP/1.1 and keep-alive upstream, WebSocket
upgrades on every path, no response buffering, 1m bodies, 5s connect and 60s read/send
timeouts, ``X-Request-ID``/``X-Forwarded-*`` headers, the next endpoint tried on an error)
and each location's own settings. A path whose Service has no ready endpoint answers 503.
Unknown hosts get the default server's 404. When endpoints change, the configuration is
written again and nginx reloads it (``SIGHUP``); connections in flight finish on the old
workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

from chorus_chartrun.proxy import Target
from chorus_chartrun.routing import Backend, Location, Server
from chorus_devstack.nginx import nginx_binary
from chorus_devstack.process import die_with_parent

__all__ = ["IngressController", "render"]

#: ingress-nginx's default Strict-Transport-Security on TLS hosts.
_HSTS = '"max-age=31536000; includeSubDomains"'
#: Backend → ready endpoints.
Endpoints = Callable[[Backend], list[Target]]
#: TLS Secret name → (certificate file, key file).
Certificates = Callable[[str], tuple[Path, Path]]

_HEADERS = """\
proxy_set_header Host $host;
proxy_set_header X-Request-ID $req_id;
proxy_set_header X-Real-IP $remote_addr;
proxy_set_header X-Forwarded-For $remote_addr;
proxy_set_header X-Forwarded-Host $host;
proxy_set_header X-Forwarded-Port $server_port;
proxy_set_header X-Forwarded-Proto $scheme;
proxy_set_header X-Scheme $scheme;
proxy_set_header Upgrade $http_upgrade;
proxy_set_header Connection $connection_upgrade;
proxy_next_upstream error timeout;
proxy_next_upstream_tries 3;
"""


def _upstream(backend: Backend) -> str:
    return "upstream_" + re.sub(r"[^A-Za-z0-9]", "_", f"{backend.service}_{backend.port}")


def _indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" if line else "\n" for line in text.splitlines())


def _location_body(location: Location, endpoints: list[Target]) -> str:
    if not endpoints:
        return "default_type text/html;\nreturn 503;\n"
    return (
        _HEADERS
        + f"proxy_http_version {location.http_version};\n"
        + f"proxy_connect_timeout {location.connect_timeout};\n"
        + f"proxy_read_timeout {location.read_timeout};\n"
        + f"proxy_send_timeout {location.send_timeout};\n"
        + f"proxy_buffering {'on' if location.buffering else 'off'};\n"
        + f"proxy_request_buffering {'on' if location.request_buffering else 'off'};\n"
        + f"client_max_body_size {location.body_size};\n"
        + f"proxy_pass http://{_upstream(location.backend)};\n"
    )


def _locations(server: Server, endpoints: Endpoints) -> str:
    blocks = []
    for location in sorted(server.locations, key=lambda item: -len(item.path)):
        body = _indent(_location_body(location, endpoints(location.backend)), 4)
        path = location.path if location.path == "/" else location.path.rstrip("/")
        if location.exact:
            blocks.append(f"location = {path} {{\n{body}}}\n")
        elif path == "/":
            blocks.append(f"location / {{\n{body}}}\n")
        else:
            blocks.append(f"location = {path} {{\n{body}}}\nlocation {path}/ {{\n{body}}}\n")
    if not any(item.path == "/" and not item.exact for item in server.locations):
        blocks.append("location / {\n    default_type text/html;\n    return 404;\n}\n")
    return "".join(blocks)


def render(
    servers: list[Server],
    endpoints: Endpoints,
    certificates: Certificates,
    *,
    prefix: Path,
    default_certificate: tuple[Path, Path],
    address: str,
    ports: tuple[int, int] = (80, 443),
) -> str:
    """The whole nginx.conf for ``servers``."""
    backends = {loc.backend for s in servers for loc in s.locations}
    upstreams = []
    for backend in sorted(backends, key=_upstream):
        targets = endpoints(backend)
        if targets:
            lines = "".join(f"    server {ip}:{port} max_fails=0;\n" for ip, port in targets)
            upstreams.append(
                f"upstream {_upstream(backend)} {{\n{lines}    keepalive 320;\n"
                "    keepalive_timeout 60s;\n    keepalive_requests 10000;\n}\n"
            )
    blocks = []
    http, https = f"{address}:{ports[0]}", f"{address}:{ports[1]}"
    cert, key = default_certificate
    catch_all = next((s for s in servers if s.host is None), None)
    default_body = (
        _locations(catch_all, endpoints) if catch_all else "location / {\n    return 404;\n}\n"
    )
    blocks.append(
        f"server {{\n    listen {http} default_server;\n    listen {https} ssl default_server;\n"
        f"    server_name _;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n"
        f"{_indent(default_body, 4)}}}\n"
    )
    for server in (s for s in servers if s.host is not None):
        body = _indent(_locations(server, endpoints), 4)
        if server.tls_secret:
            tls_cert, tls_key = certificates(server.tls_secret)
            hsts = (
                f"    add_header Strict-Transport-Security {_HSTS} always;\n" if server.hsts else ""
            )
            blocks.append(
                f"server {{\n    listen {https} ssl;\n    server_name {server.host};\n"
                f"    ssl_certificate {tls_cert};\n    ssl_certificate_key {tls_key};\n"
                f"{hsts}{body}}}\n"
            )
            plain = (
                "    location / {\n        return 308 https://$host$request_uri;\n    }\n"
                if server.ssl_redirect
                else body
            )
            if server.ssl_redirect or not server.tls_secret:
                blocks.append(
                    f"server {{\n    listen {http};\n    server_name {server.host};\n{plain}}}\n"
                )
        else:
            blocks.append(
                f"server {{\n    listen {http};\n    server_name {server.host};\n{body}}}\n"
            )
    temp = "".join(
        f"{kind}_temp_path {prefix / 'tmp' / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return f"""\
# Generated by chart-run from the rendered Ingress / HTTPRoute objects; do not edit.
{user}worker_processes 1;
daemon off;
pid {prefix / "nginx.pid"};
error_log stderr warn;
events {{
    worker_connections 16384;
}}
http {{
    access_log {prefix / "access.log"};
{_indent(temp, 4)}    server_tokens off;
    server_names_hash_bucket_size 128;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    map $http_x_request_id $req_id {{
        default $http_x_request_id;
        ''      $request_id;
    }}
{_indent("".join(upstreams), 4)}{_indent("".join(blocks), 4)}}}
"""


class IngressController:
    """nginx in the node, serving ``servers()`` on ``address`` ports 80 and 443 (its
    load balancer's address)."""

    def __init__(
        self,
        directory: Path,
        address: str,
        *,
        servers: Callable[[], list[Server]],
        endpoints: Endpoints,
        certificates: Certificates,
        default_certificate: tuple[Path, Path],
    ) -> None:
        self.directory = directory
        self.address = address
        self.servers = servers
        self.endpoints = endpoints
        self.certificates = certificates
        self.default_certificate = default_certificate
        self.conf = directory / "nginx.conf"
        self.log = directory / "nginx.log"
        self.process: asyncio.subprocess.Process | None = None
        self.reloads = 0

    def _render(self) -> str:
        return render(
            self.servers(),
            self.endpoints,
            self.certificates,
            prefix=self.directory,
            default_certificate=self.default_certificate,
            address=self.address,
        )

    async def _check(self, binary: str) -> None:
        process = await asyncio.create_subprocess_exec(
            binary,
            "-t",
            "-q",
            "-p",
            str(self.directory),
            "-c",
            str(self.conf),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            msg = f"nginx refused the generated configuration:\n{output.decode(errors='replace')}"
            raise RuntimeError(msg)

    async def start(self) -> None:
        """Write the configuration, check it, start nginx."""
        binary = nginx_binary()
        if binary is None:
            msg = "nginx is not installed (make chart-run installs it)"
            raise RuntimeError(msg)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.directory / "tmp" / kind).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._render())
        await self._check(binary)
        # nginx's workers outlive a killed master: nginx runs as PID 1 of a PID namespace of
        # its own, which takes them all down with it (and it dies with chart-run).
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                "unshare",
                "--pid",
                "--fork",
                "--kill-child",
                binary,
                "-p",
                str(self.directory),
                "-c",
                str(self.conf),
                "-e",
                "stderr",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        for _ in range(200):
            if self.process.returncode is not None:
                msg = (
                    f"nginx exited with {self.process.returncode}:\n{self.log.read_text()[-2000:]}"
                )
                raise RuntimeError(msg)
            try:
                _, writer = await asyncio.open_connection(self.address, 80)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return
        msg = "nginx did not listen within 10s"
        raise RuntimeError(msg)

    def _signal_master(self, sig: int) -> None:
        """Signal nginx's master (the child of ``unshare``, by its pid out here)."""
        if self.process is None or self.process.returncode is not None:
            return
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        with contextlib.suppress(OSError, ValueError):
            for pid in children.read_text().split():
                os.kill(int(pid), sig)

    async def sync(self) -> None:
        """Write the configuration again and reload nginx if it changed."""
        if self.process is None or self.process.returncode is not None:
            return
        text = self._render()
        if text == self.conf.read_text():
            return
        self.conf.write_text(text)
        self._signal_master(signal.SIGHUP)
        self.reloads += 1

    async def stop(self) -> None:
        """Stop nginx (quickly: the pods behind it are gone)."""
        if self.process is None or self.process.returncode is not None:
            return
        self._signal_master(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
