"""The cluster: ``helm install --wait`` and ``helm test`` of one release, then its deletion.

:meth:`Cluster.install` renders the chart for the values files (and the site's values),
applies what the site provides and the release's objects — ConfigMaps, Secrets, Services
(each with a ClusterIP and a proxy), the Ingress or HTTPRoute routing (validated before any
pod starts) — runs the ``pre-install`` hooks in Helm's order, starts every workload, puts
nginx in front, and waits until every workload is ready as ``helm install --wait`` would
(and every Job complete). It stops waiting, with a report naming each workload that cannot
get ready and why (the pod's container state, probe failures and last log lines), as soon as
nothing can change any more: a configuration error, an image that cannot be had, a volume
that cannot be mounted, a probe path the container does not serve (404), a crash loop — or
when ``timeout`` runs out. :meth:`Cluster.helm_test` runs the ``test`` hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm

from chorus_chartrun.controllers import Controller, PodController, controller_for
from chorus_chartrun.images import Images
from chorus_chartrun.ingress import IngressController
from chorus_chartrun.kubelet import Node, Pod
from chorus_chartrun.network import Network
from chorus_chartrun.objects import NotFoundError, Store, secret_data
from chorus_chartrun.proxy import Target
from chorus_chartrun.release import Obj, Release, effective_values, load_values_files, render
from chorus_chartrun.routing import Backend, RoutingError, Server, from_httproutes, from_ingresses
from chorus_chartrun.services import Services
from chorus_chartrun.site import Site

__all__ = ["Cluster", "ClusterOptions", "InstallError"]

#: Kinds that configure or describe but run nothing here; NetworkPolicy is not enforced
#: (no CNI), monitoring objects need the Prometheus operator.
_PASSIVE = {
    "ServiceAccount",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "NetworkPolicy",
    "ServiceMonitor",
    "PrometheusRule",
}
#: A container that restarted this often while the release was being waited for is failing.
_CRASH_LOOP = 4
#: Waiting reasons no retry can cure while the objects stay as rendered.
_STUCK = ("CreateContainerConfigError", "ErrImagePull", "Unsupported")


class InstallError(RuntimeError):
    """The release could not be installed (or tested); the message is the full report."""


@dataclass
class ClusterOptions:
    """What to install and how."""

    chart: Path
    values_files: Sequence[Path] = ()
    state_dir: Path = Path(".chart-run/run")
    cache_dir: Path = Path(".chart-run")
    release: str = "chorus"
    namespace: str = "chorus"
    timeout: float = 300.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    #: Extra values layered over the values files.
    extra_values: Mapping[str, Any] = field(default_factory=dict)
    #: Layer the site's values (SMTP relay, LLM provider) over the values files.
    site_values: bool = True


class Cluster:
    """One release on a node of this machine."""

    def __init__(self, options: ClusterOptions, repo: Path) -> None:
        self.options = options
        self.state_dir = options.state_dir
        self.store = Store()
        self.network = Network()
        self.site = Site(self.state_dir / "site", self.network)
        self.release: Release | None = None
        self.controllers: list[Controller] = []
        self.hooks: list[Controller] = []
        self.services = Services(self.store, self.network, self._pods)
        self.ingress: IngressController | None = None
        self.ingress_ip = ""
        self.node = Node(
            store=self.store,
            network=self.network,
            images=Images(repo, options.cache_dir),
            state_dir=self.state_dir,
            service_ips=lambda: self.services.ips(options.namespace),
            outside=lambda: self.site.outside,
            on_change=self._changed,
            backoff_initial=options.backoff_initial,
            backoff_max=options.backoff_max,
        )
        self.phase = "Pending"
        self.notes: list[str] = []
        self._dirty = asyncio.Event()
        self._syncer: asyncio.Task[None] | None = None

    # -- pods, endpoints, routing ----------------------------------------------------------

    def _pods(self) -> Iterator[Pod]:
        for controller in [*self.controllers, *self.hooks]:
            yield from controller.pods

    def pods(self) -> list[Pod]:
        """Every pod, hooks' included."""
        return list(self._pods())

    def _changed(self) -> None:
        self._dirty.set()

    async def _sync_forever(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(0.05)
            self._dirty.clear()
            await self.services.sync()
            if self.ingress is not None:
                await self.ingress.sync()

    def _servers(self) -> list[Server]:
        assert self.release is not None
        ingresses = self.release.of_kind("Ingress")
        routes = self.release.of_kind("HTTPRoute")
        servers = from_ingresses(ingresses)
        if routes:
            services = {
                s["metadata"]["name"]: s for s in self.store.list("Service", self.options.namespace)
            }
            servers += from_httproutes(routes, self.store.list("Gateway"), services)
        return servers

    def _endpoints(self, backend: Backend) -> list[Target]:
        return self.services.endpoints_of(self.options.namespace, backend.service, backend.port)

    def _certificate(self, reference: str) -> tuple[Path, Path]:
        namespace, _, name = reference.partition("/")
        try:
            data = secret_data(self.store.get("Secret", namespace, name))
        except NotFoundError as exc:
            msg = f"TLS Secret {reference}: {exc}"
            raise RoutingError(msg) from None
        directory = self.state_dir / "ingress" / "certs"
        directory.mkdir(parents=True, exist_ok=True)
        cert, key = directory / f"{namespace}-{name}.crt", directory / f"{namespace}-{name}.key"
        cert.write_bytes(data["tls.crt"])
        key.write_bytes(data["tls.key"])
        key.chmod(0o600)
        return cert, key

    # -- install --------------------------------------------------------------------------

    def render(self) -> Release:
        """Render the release: the values files, then the site's values; InstallError if Helm
        refuses the values (schema) or a template fails."""
        layers = [load_values_files(self.options.values_files), dict(self.options.extra_values)]
        try:
            effective = effective_values(self.options.chart, layers)
            self.site.plan(effective)
            if self.options.site_values:
                layers.append(self.site.values(effective))
            return render(
                self.options.chart,
                layers,
                name=self.options.release,
                namespace=self.options.namespace,
            )
        except helm.HelmError as exc:
            msg = f"helm refused the chart or its values: {exc}"
            raise InstallError(msg) from None

    async def install(self) -> None:
        """``helm install --wait``; InstallError with the report when it cannot be done."""
        started = time.monotonic()
        self.phase = "Installing"
        self._syncer = asyncio.create_task(self._sync_forever())
        await self.network.set_up_node()
        self.release = release = self.render()
        await self.site.start()
        for obj in self.site.objects(release):
            self.store.apply(obj)
        workloads = await self._apply(release)
        try:
            self._servers()
        except RoutingError as exc:
            raise InstallError(f"routing: {exc}") from None
        await self._hooks("pre-install", started)
        hpas = {
            h["spec"]["scaleTargetRef"]["name"]: h
            for h in release.of_kind("HorizontalPodAutoscaler")
        }
        for obj in workloads:
            controller = controller_for(obj, self.node, hpas=hpas)
            assert controller is not None
            self.controllers.append(controller)
            controller.start()
        await self._start_ingress()
        await self._wait(self.controllers, started, "install")
        await self._hooks("post-install", started)
        self.phase = "Ready"

    async def _apply(self, release: Release) -> list[Obj]:
        """Apply the release's objects in Helm's order; the workloads, to start after hooks."""
        workloads = []
        for obj in release.objects:
            kind = obj["kind"]
            if kind == "Service":
                await self.services.create(obj)
            elif kind in ("Deployment", "StatefulSet", "Job", "Pod"):
                workloads.append(obj)
            elif kind in ("ConfigMap", "Secret", "Ingress", "HTTPRoute") or kind in _PASSIVE:
                self.store.apply(obj)
            else:
                msg = f"{kind}/{obj['metadata']['name']}: chart-run cannot run a {kind}"
                raise InstallError(msg)
            if kind == "NetworkPolicy":
                self._note("NetworkPolicy objects are applied but not enforced (no CNI here)")
            elif kind in ("ServiceMonitor", "PrometheusRule"):
                self._note(f"{kind} objects need the Prometheus operator: not run")
        return workloads

    async def _start_ingress(self) -> None:
        certificate, key = self.site.default_certificate()
        certs = self.state_dir / "ingress" / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        (certs / "default.crt").write_bytes(certificate)
        (certs / "default.key").write_bytes(key)
        self.ingress_ip = await self.network.outside_ip()
        self.ingress = IngressController(
            self.state_dir / "ingress",
            self.ingress_ip,
            servers=self._servers,
            endpoints=self._endpoints,
            certificates=self._certificate,
            default_certificate=(certs / "default.crt", certs / "default.key"),
        )
        try:
            await self.ingress.start()
        except (RuntimeError, RoutingError) as exc:
            raise InstallError(f"ingress: {exc}") from None

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    async def _hooks(self, event: str, started: float) -> None:
        assert self.release is not None
        for hook in self.release.hooks_for(event):
            controller = controller_for(hook, self.node, hpas={})
            if controller is None:
                self.store.apply(hook)
                continue
            self.hooks.append(controller)
            controller.start()
            await self._wait([controller], started, f"{event} hook", complete=True)

    # -- waiting --------------------------------------------------------------------------

    def _problems(self, controller: Controller, *, final: bool) -> list[str]:
        """Why ``controller`` cannot get ready (empty while it still may)."""
        if controller.failure:
            return [controller.failure]
        found = []
        for pod in controller.pods:
            if pod.phase == "Failed" and not isinstance(controller, PodController):
                continue
            for status in pod.statuses.values():
                if status.ready or (
                    status.init and status.state == "terminated" and status.exit_code == 0
                ):
                    continue
                stuck = status.reason in _STUCK or (
                    status.reason == "ContainerCreating" and status.message
                )
                crashing = status.restarts >= _CRASH_LOOP and status.state != "running"
                unserved = status.state == "running" and "statuscode: 404" in status.probe_failure
                if stuck or crashing or unserved or final or pod.phase == "Failed":
                    found.append(self._explain(pod, status.name))
        return found

    def _explain(self, pod: Pod, container: str) -> str:
        status = pod.statuses[container]
        kind = "init container" if status.init else "container"
        state = status.reason or status.state
        lines = [
            f"pod {pod.name}: {kind} {container} {state}"
            + (f": {status.message}" if status.message else "")
        ]
        if status.restarts:
            lines.append(f"  restarts: {status.restarts}")
        if status.probe_failure:
            lines.append(f"  {status.probe_failure}")
        if status.last_exit:
            lines.append("  last exit: " + status.last_exit.replace("\n", "\n    "))
        elif status.state == "running":
            tail = pod.logs(container, 3)
            if tail:
                lines.append("  log: " + tail.replace("\n", "\n    "))
        return "\n".join(lines)

    async def _wait(
        self, controllers: list[Controller], started: float, what: str, *, complete: bool = False
    ) -> None:
        deadline = started + self.options.timeout
        while True:
            pending = [c for c in controllers if not c.ready()]
            if not pending:
                return
            failed = {c.ref: self._problems(c, final=False) for c in pending}
            timed_out = time.monotonic() > deadline
            # Stop once every workload that is not ready has a reason it never will be.
            if timed_out or all(failed.values()) or (complete and any(c.failure for c in pending)):
                if timed_out:
                    failed = {c.ref: self._problems(c, final=True) for c in pending}
                self.phase = "Failed"
                elapsed = time.monotonic() - started
                header = f"{what} failed after {elapsed:.0f}s" + (
                    " (timed out)" if timed_out else ""
                )
                report = [header + ":"]
                for controller in pending:
                    report.append(f"{controller.ref}: {controller.summary()}")
                    report += [
                        "  " + line.replace("\n", "\n  ")
                        for line in _distinct(failed[controller.ref])
                    ]
                raise InstallError("\n".join(report))
            await asyncio.sleep(0.25)

    # -- helm test and deletion -----------------------------------------------------------

    async def helm_test(self) -> list[tuple[str, str, str]]:
        """Run the ``test`` hooks in order: (pod, phase, logs) each; InstallError if one fails."""
        assert self.release is not None
        results = []
        for hook in self.release.hooks_for("test"):
            controller = PodController(hook, self.node)
            self.hooks.append(controller)
            controller.start()
            started = time.monotonic()
            while not controller.pods or controller.pods[0].phase not in ("Succeeded", "Failed"):
                if time.monotonic() - started > self.options.timeout:
                    break
                await asyncio.sleep(0.25)
            pod = controller.pods[0]
            logs = "\n".join(pod.logs(c["name"], 60) for c in pod.spec["containers"])
            results.append((pod.name, pod.phase, logs))
            await pod.terminate(0)
            if pod.phase != "Succeeded":
                details = "\n".join(self._explain(pod, c["name"]) for c in pod.spec["containers"])
                msg = f"helm test: Pod/{pod.name} {pod.phase}:\n{details}\n{logs}"
                raise InstallError(msg)
        return results

    async def delete(self, grace: float | None = None) -> None:
        """Delete the release: every pod terminated (its own grace period unless ``grace``)."""
        await asyncio.gather(*(c.stop(grace) for c in [*self.controllers, *self.hooks]))
        if self.ingress is not None:
            await self.ingress.stop()
        await self.services.close()
        if self._syncer is not None:
            self._syncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._syncer
        await asyncio.to_thread(self.site.stop)
        self.phase = "Deleted"

    def status(self) -> dict[str, Any]:
        """The cluster as data (the runner's API)."""
        return {
            "phase": self.phase,
            "notes": self.notes,
            "workloads": [
                {"workload": c.ref, "ready": c.ready(), "summary": c.summary()}
                for c in self.controllers
            ],
            "pods": [p.describe() for p in self.pods()],
            "outside": self.site.describe(),
        }


def _distinct(problems: list[str]) -> list[str]:
    """One report per kind of problem: the first pod's in full, the others by name."""
    if not problems:
        return ["(still starting)"]
    seen: dict[str, list[str]] = {}
    for problem in problems:
        head = problem.splitlines()[0]
        pod, _, rest = head.partition(": ")
        key = (
            rest.split(":", 1)[0]
            + " / "
            + next(
                (
                    line.split(":", 1)[0]
                    for line in problem.splitlines()[1:]
                    if "probe failed" in line
                ),
                "",
            )
        )
        if key in seen:
            seen[key].append(pod.removeprefix("pod "))
        else:
            seen[key] = [problem]
    lines = []
    for reports in seen.values():
        lines.append(reports[0])
        if len(reports) > 1:
            lines.append(f"  (the same for {', '.join(reports[1:])})")
    return lines
