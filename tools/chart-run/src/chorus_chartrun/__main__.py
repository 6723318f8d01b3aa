"""``python -m chorus_chartrun``: what ``make chart-run`` runs.

Installs the chart as ``helm install --wait`` would (``--values`` files in order, the
chart's defaults when none), runs ``helm test``, prints the URLs, and keeps the release
running until Ctrl-C, which deletes it: every pod gets its ``preStop`` hook and grace
period (a second Ctrl-C kills at once). Needs root (network and mount namespaces). With
``--status-file`` the URLs (or the failure report) are also written there as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from chorus_chartrun.api import create_api
from chorus_chartrun.cluster import Cluster, ClusterOptions, InstallError
from chorus_chartrun.network import Network
from chorus_chartrun.proxy import PortForward, Target
from chorus_chartrun.release import Release, merge_values
from chorus_devstack.routes import repo_root
from chorus_devstack.testing import EmbeddedServer

#: Ports of the machine forwarded into the node (bound before leaving its namespace).
FORWARDS = ("http", "https", "mail", "llm", "postgres", "redis", "api")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chorus_chartrun", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--values", "-f", action="append", type=Path, default=[], help="values file (repeatable)"
    )
    parser.add_argument("--chart", type=Path, help="the chart (default: deploy/helm/chorus)")
    parser.add_argument("--state-dir", type=Path, help="this run's files (default: .chart-run/run)")
    parser.add_argument(
        "--cache-dir", type=Path, help="images kept across runs (default: .chart-run)"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds for the release to get ready"
    )
    parser.add_argument(
        "--status-file", type=Path, help="write the URLs or the failure here (JSON)"
    )
    parser.add_argument("--no-test", action="store_true", help="skip helm test")
    parser.add_argument(
        "--grace", type=float, help="grace period for every pod on stop (default: each pod's)"
    )
    parser.add_argument(
        "--set-json", action="append", default=[], help="extra values as JSON (repeatable)"
    )
    parser.add_argument(
        "--no-site-values",
        action="store_true",
        help="the values files alone: no SMTP relay or LLM provider from the site",
    )
    return parser


def _service_target(cluster: Cluster, port_name: str) -> Target | None:
    """The bundled Service with a port named ``port_name`` (the chart's databases)."""
    for service in cluster.store.list("Service", cluster.options.namespace):
        for port in service["spec"].get("ports") or []:
            if port.get("name") == port_name and service["spec"].get("clusterIP"):
                return service["spec"]["clusterIP"], int(port["port"])
    return None


def _outside(cluster: Cluster, name: str, port: str) -> Target | None:
    server = cluster.site.servers.get(name)
    return (server.ip, server.ports[port]) if server else None


def _hosts(release: Release) -> list[str]:
    hosts = {
        r.get("host") for i in release.of_kind("Ingress") for r in i["spec"].get("rules") or []
    }
    hosts |= {h for r in release.of_kind("HTTPRoute") for h in r["spec"].get("hostnames") or []}
    return sorted(h for h in hosts if h)


def _urls(cluster: Cluster, forwards: dict[str, PortForward]) -> dict[str, Any]:
    assert cluster.release is not None
    secret = cluster.store.find(
        "Secret", cluster.options.namespace, f"{cluster.options.release}-secrets"
    )
    return {
        "ingress_http": f"http://{forwards['http'].url_host}",
        "ingress_https": f"https://{forwards['https'].url_host}",
        "hosts": _hosts(cluster.release),
        "ca": str(cluster.site.ca_path.resolve()),
        "mail": f"http://{forwards['mail'].url_host}",
        "llm": f"http://{forwards['llm'].url_host}",
        "api": f"http://{forwards['api'].url_host}",
        "postgres": f"127.0.0.1:{forwards['postgres'].port}",
        "redis": f"127.0.0.1:{forwards['redis'].port}",
        "generated_secret": secret is not None,
    }


def _banner(
    cluster: Cluster, urls: dict[str, Any], tests: list[tuple[str, str, str]], elapsed: float
) -> str:
    assert cluster.release is not None
    values = ", ".join(str(p) for p in cluster.options.values_files) or "the chart's defaults"
    rows = [
        (
            "ingress",
            f"{urls['ingress_http']}/   (the web client; /api/docs, /ws/{{room}}, /events, /v1)",
        )
    ]
    if urls["hosts"]:
        rows.append(
            (
                "hosts",
                f"{', '.join(urls['hosts'])} → {urls['ingress_https']} "
                f"(send Host/SNI; CA {urls['ca']})",
            )
        )
    rows += [
        ("mail inbox", f"{urls['mail']}/messages   (the SMTP relay smtp.chorus.test)"),
        ("llm upstream", f"{urls['llm']}/v1/models   (llm.chorus.test)"),
        ("postgres", f"{urls['postgres']}   (port-forward)"),
        ("redis", f"{urls['redis']}   (port-forward)"),
        (
            "cluster",
            f"{urls['api']}/status   (pods, /pods/<pod>/logs, /pods/<pod>/proxy/<port>/<path>)",
        ),
    ]
    for controller in cluster.controllers:
        rows.append((controller.ref, controller.summary()))
    rows += [(f"helm test {name}", phase) for name, phase, _ in tests]
    rows += [("note", note) for note in cluster.notes]
    rows += [
        ("logs", f"{cluster.state_dir / 'logs'}/"),
        ("stop", "Ctrl-C (a second one kills at once)"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"\nChorus is up from the chart ({values}) in {elapsed:.0f}s."]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows]
    return "\n".join(lines) + "\n"


async def _serve_api(cluster: Cluster, forward: PortForward) -> asyncio.Task[None]:
    import uvicorn  # noqa: PLC0415 - only the CLI serves the API

    config = uvicorn.Config(create_api(cluster), log_config=None, access_log=False, lifespan="off")
    server = EmbeddedServer(config)
    return asyncio.create_task(server.serve(sockets=[forward.sock]))


def _write(path: Path | None, data: dict[str, Any]) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2))


def _options(args: argparse.Namespace, repo: Path) -> ClusterOptions:
    cache = (args.cache_dir or repo / ".chart-run").resolve()
    state = (args.state_dir or cache / "run").resolve()
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    extra: dict[str, Any] = {}
    for raw in args.set_json:
        extra = merge_values(extra, json.loads(raw))
    return ClusterOptions(
        chart=(args.chart or repo / "deploy" / "helm" / "chorus").resolve(),
        values_files=[p.resolve() for p in args.values],
        state_dir=state,
        cache_dir=cache,
        timeout=args.timeout,
        extra_values=extra,
        site_values=not args.no_site_values,
    )


class _Interrupts:
    """Ctrl-C and SIGTERM: the first asks to stop, a second to stop at once."""

    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        self.count += 1
        self.event.set()


async def _start_forwards(cluster: Cluster, forwards: dict[str, PortForward]) -> None:
    await forwards["http"].start(lambda: (cluster.ingress_ip, 80))
    await forwards["https"].start(lambda: (cluster.ingress_ip, 443))
    await forwards["mail"].start(lambda: _outside(cluster, "smtp", "http"))
    await forwards["llm"].start(lambda: _outside(cluster, "llm", "http"))
    await forwards["postgres"].start(
        lambda: _outside(cluster, "postgres", "postgres") or _service_target(cluster, "postgres")
    )
    await forwards["redis"].start(
        lambda: _outside(cluster, "redis", "redis") or _service_target(cluster, "redis")
    )


async def _install(cluster: Cluster, *, test: bool) -> list[tuple[str, str, str]]:
    await cluster.install()
    return await cluster.helm_test() if test else []


async def _delete(cluster: Cluster, grace: float | None, interrupts: _Interrupts) -> None:
    """Delete the release; a further Ctrl-C turns a graceful deletion into an immediate one."""
    graceful = grace != 0.0
    note = " (grace periods honoured; Ctrl-C again to kill)" if graceful else ""
    print(f"\nDeleting the release…{note}", flush=True)
    seen = interrupts.count
    deletion = asyncio.create_task(cluster.delete(grace))
    while not deletion.done():
        await asyncio.wait({deletion}, timeout=0.5)
        if graceful and interrupts.count > seen:
            graceful = False
            deletion.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deletion
            deletion = asyncio.create_task(cluster.delete(0.0))
    deletion.result()


async def run(args: argparse.Namespace, forwards: dict[str, PortForward]) -> int:
    """Install, test, serve until told to stop, delete; the exit status."""
    repo = repo_root()
    options = _options(args, repo)
    cluster = Cluster(options, repo)
    interrupts = _Interrupts()
    api = await _serve_api(cluster, forwards["api"])
    started = time.monotonic()
    print(f"Installing the chart {options.chart} (logs in {options.state_dir / 'logs'})…")
    install = asyncio.create_task(_install(cluster, test=not args.no_test))
    code, grace = 0, args.grace
    try:
        waiter = asyncio.create_task(interrupts.event.wait())
        await asyncio.wait({install, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not install.done():
            install.cancel()
            with contextlib.suppress(asyncio.CancelledError, InstallError):
                await install
            print("\nInterrupted while installing.", file=sys.stderr)
            code, grace = 130, 0.0
            return code
        tests = install.result()
        await _start_forwards(cluster, forwards)
        urls = _urls(cluster, forwards)
        print(_banner(cluster, urls, tests, time.monotonic() - started), flush=True)
        status: dict[str, Any] = {"phase": "Ready", "urls": urls, "notes": cluster.notes}
        status["tests"] = [{"pod": name, "phase": phase} for name, phase, _ in tests]
        _write(args.status_file, status)
        await waiter
    except InstallError as exc:
        code, grace = 1, 0.0
        print(f"\nchart-run: {exc}", file=sys.stderr, flush=True)
        failure = {"phase": "Failed", "failure": str(exc), "status": cluster.status()}
        _write(args.status_file, failure)
    finally:
        await _delete(cluster, grace if interrupts.count < 2 else 0.0, interrupts)
        api.cancel()
        for forward in forwards.values():
            await forward.close()
        print("Deleted.", flush=True)
    return code


def main() -> None:
    """Entry point."""
    args = _parser().parse_args()
    if os.geteuid() != 0:
        sys.exit("chart-run needs root: pods get network and mount namespaces of their own")
    forwards = {name: PortForward.bind(name) for name in FORWARDS}
    Network.enter_node()
    sys.exit(asyncio.run(run(args, forwards)))


if __name__ == "__main__":
    main()
