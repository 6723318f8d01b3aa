"""The kubelet: runs a pod from sandbox to termination, as Kubernetes' node agent would.

A pod gets its sandbox (network, UTS and IPC namespaces, an address), its volumes, then its
init containers one after another (each must exit 0), then its containers. A container is
configured from the manifest (a missing Secret key is ``CreateContainerConfigError``, not a
guess), started, probed — the startup probe first, then liveness and readiness, with their
delays, periods, timeouts and thresholds — and restarted per ``restartPolicy`` with the
kubelet's doubling back-off (``CrashLoopBackOff``). A failed liveness or startup probe kills
the container (``preStop`` first) so it restarts. Termination runs each container's
``preStop`` hook, then sends the image's stop signal, and kills what is left when
``terminationGracePeriodSeconds`` (counted from the start of the hook) runs out.

Everything a ``kubectl describe pod`` would show is kept: container states, restart counts,
the last exit, and events (``Unhealthy``, ``BackOff``, ``Failed``...).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chorus_chartrun.container import Launch
from chorus_chartrun.containers import DEATH_SIGNAL, ContainerProcess, exec_in
from chorus_chartrun.envvars import ConfigError, PodFacts, container_env, service_link_env
from chorus_chartrun.images import Image, ImageError, Images
from chorus_chartrun.launches import build_launch, unsupported_fields
from chorus_chartrun.network import GATEWAY, Network, hosts_file, resolv_conf
from chorus_chartrun.objects import Store
from chorus_chartrun.probes import ProbeSpec, Result, run_handler
from chorus_chartrun.release import Obj
from chorus_chartrun.volumes import PodVolumes, VolumeError
from chorus_devstack.process import die_with_parent

__all__ = ["ContainerStatus", "Event", "Node", "Pod"]

#: A container that ran this long has its back-off reset (the kubelet's 10 minutes).
_BACKOFF_RESET = 600.0


@dataclass
class Node:
    """What every pod of this node shares."""

    store: Store
    network: Network
    images: Images
    state_dir: Path
    #: Service name → ClusterIP, for the pods' hosts files.
    service_ips: Callable[[], Mapping[str, str]]
    #: Names of the world outside the cluster → address.
    outside: Callable[[], Mapping[str, str]]
    #: Called whenever a pod's readiness or phase changes (endpoints, ingress).
    on_change: Callable[[], None]
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    name: str = "chart-run"


@dataclass
class Event:
    """One line of ``kubectl describe``'s events (repeats counted, as the API server does)."""

    at: float
    type: str
    reason: str
    message: str
    count: int = 1


@dataclass
class ContainerStatus:
    """A container's state, as the pod's status reports it."""

    name: str
    init: bool = False
    state: str = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    exit_code: int | None = None
    restarts: int = 0
    started: bool = False
    ready: bool = False
    last_exit: str = ""
    probe_failure: str = ""
    pid: int | None = None
    #: The user the container's process runs as (once started).
    uid: int | None = None


@dataclass
class _Running:
    """One run of a container: its process and what its probes decided."""

    spec: Obj
    image: Image
    launch: Launch
    process: ContainerProcess
    kill_reason: str = ""
    kill: asyncio.Event = field(default_factory=asyncio.Event)


class Pod:
    """A pod being run by the kubelet."""

    def __init__(self, obj: Obj, node: Node) -> None:
        self.obj = obj
        self.node = node
        meta = obj["metadata"]
        self.name: str = meta["name"]
        self.namespace: str = meta["namespace"]
        self.labels: dict[str, str] = dict(meta.get("labels") or {})
        self.spec: Obj = obj["spec"]
        self.uid = str(uuid.uuid4())
        self.phase = "Pending"
        self.ip = ""
        self.events: list[Event] = []
        self.statuses: dict[str, ContainerStatus] = {}
        for kind in ("initContainers", "containers"):
            for container in self.spec.get(kind) or []:
                self.statuses[container["name"]] = ContainerStatus(
                    container["name"], init=kind == "initContainers"
                )
        self.dir = node.state_dir / "pods" / self.name
        self.log_dir = node.state_dir / "logs" / self.name
        self.terminating = False
        self._deletion_grace = 0.0
        #: Set the first time every container is ready (OrderedReady waits for it).
        self.became_ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._running: dict[str, _Running] = {}
        self._sandbox: asyncio.subprocess.Process | None = None
        self._volumes: PodVolumes | None = None
        self._files: dict[str, str] = {}
        self.task: asyncio.Task[None] | None = None

    # -- status --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Every container is ready and the pod is not terminating (an endpoint)."""
        regular = [s for s in self.statuses.values() if not s.init]
        return not self.terminating and self.phase == "Running" and all(s.ready for s in regular)

    @property
    def restart_policy(self) -> str:
        """``Always``, ``OnFailure`` or ``Never``."""
        return str(self.spec.get("restartPolicy", "Always"))

    def event(self, kind: str, reason: str, message: str) -> None:
        """Record an event; a repeat of a recent one only counts (the last 50 are kept)."""
        for known in self.events[-10:]:
            if (known.type, known.reason, known.message) == (kind, reason, message):
                known.count += 1
                known.at = time.time()
                return
        self.events.append(Event(time.time(), kind, reason, message))
        del self.events[:-50]

    def logs(self, container: str, lines: int = 40) -> str:
        """The last lines the container wrote (all runs)."""
        path = self.log_dir / f"{container}.log"
        return ContainerProcess(container, path, path).tail(lines)

    def _set(self, name: str, **changes: Any) -> None:
        status = self.statuses[name]
        before = (status.ready, status.state)
        for key, value in changes.items():
            setattr(status, key, value)
        if (status.ready, status.state) != before:
            if self.ready:
                self.became_ready.set()
            self.node.on_change()

    def _set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.node.on_change()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Run the pod in the background."""
        self.task = asyncio.create_task(self._run(), name=f"pod:{self.name}")

    async def _run(self) -> None:
        refused = unsupported_fields(self.obj)
        if refused:
            self.event("Warning", "Unsupported", f"chart-run cannot run: {', '.join(refused)}")
            for name in self.statuses:
                self._set(name, reason="Unsupported", message=", ".join(refused))
            self._set_phase("Failed")
            return
        try:
            await self._create_sandbox()
        except (OSError, RuntimeError) as exc:
            self.event("Warning", "FailedCreatePodSandBox", str(exc))
            self._set_phase("Failed")
            return
        self.event(
            "Normal",
            "Scheduled",
            f"Successfully assigned {self.namespace}/{self.name} to {self.node.name}",
        )
        if not await self._set_up_volumes():
            return
        for container in self.spec.get("initContainers") or []:
            if not await self._run_container(container, init=True):
                if not self.terminating:
                    self._set_phase("Failed")
                return
        self._set_phase("Running")
        results = await asyncio.gather(
            *(self._run_container(c, init=False) for c in self.spec["containers"])
        )
        if not self.terminating:
            self._set_phase("Succeeded" if all(results) else "Failed")

    async def _create_sandbox(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._sandbox = await asyncio.create_subprocess_exec(
            "unshare",
            "--net",
            "--uts",
            "--ipc",
            "sleep",
            "infinity",
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent(DEATH_SIGNAL),
        )
        attachment = await self.node.network.attach(self._sandbox.pid)
        self.ip = attachment.ip
        hostname = str(self.spec.get("hostname") or self.name)
        files = {
            "/etc/hosts": hosts_file(
                pod_ip=self.ip,
                hostname=hostname,
                services=self.node.service_ips(),
                namespace=self.namespace,
                outside=self.node.outside(),
                aliases=self.spec.get("hostAliases") or [],
            ),
            "/etc/hostname": hostname + "\n",
            "/etc/resolv.conf": resolv_conf(self.namespace),
        }
        for target, text in files.items():
            path = self.dir / "etc" / target.rsplit("/", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o644)
            self._files[target] = str(path)

    async def _set_up_volumes(self) -> bool:
        self._volumes = PodVolumes(
            self.obj,
            store=self.node.store,
            directory=self.dir / "volumes",
            claims=self.node.state_dir / "claims",
        )
        while not self.terminating:
            try:
                self._volumes.set_up()
            except VolumeError as exc:
                self.event("Warning", "FailedMount", str(exc))
                for status in self.statuses.values():
                    self._set(status.name, reason="ContainerCreating", message=str(exc))
                await self._sleep(self.node.backoff_max)
                continue
            return True
        return False

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless the pod is terminated first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def facts(self) -> PodFacts:
        """What fieldRef may read."""
        meta = self.obj["metadata"]
        return PodFacts(
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            node_name=self.node.name,
            host_ip=GATEWAY,
            pod_ip=self.ip,
            service_account=str(self.spec.get("serviceAccountName", "default")),
            labels=self.labels,
            annotations=meta.get("annotations") or {},
        )

    async def _prepare(self, container: Obj) -> tuple[Image, Launch]:
        image = await asyncio.to_thread(self.node.images.pull, container["image"])
        links = None
        if self.spec.get("enableServiceLinks", True):
            links = service_link_env(list(self.node.store.list("Service", self.namespace)))
        env = container_env(container, pod=self.facts(), store=self.node.store, service_links=links)
        assert self._volumes is not None
        assert self._sandbox is not None
        launch = build_launch(
            pod=self.obj,
            container=container,
            image=image,
            env=env,
            volume_mounts=self._volumes.mounts(container, env),
            files=self._files,
            sandbox_pid=self._sandbox.pid,
            hostname=str(self.spec.get("hostname") or self.name),
            rootfs=str(self.dir / "rootfs" / container["name"]),
        )
        launch.death_signal = DEATH_SIGNAL
        launch.hidden = [str(self.node.state_dir)]
        return image, launch

    def _backoff(self, restarts: int) -> float:
        return float(
            min(self.node.backoff_initial * 2 ** max(restarts - 1, 0), self.node.backoff_max)
        )

    async def _run_container(self, container: Obj, *, init: bool) -> bool:
        """Run (and restart) one container; True once it has ended with success."""
        name = container["name"]
        while not self.terminating:
            status = self.statuses[name]
            try:
                image, launch = await self._prepare(container)
            except ImageError as exc:
                self.event(
                    "Warning", "Failed", f"Failed to pull image {container['image']!r}: {exc}"
                )
                self._set(name, state="waiting", reason="ErrImagePull", message=str(exc))
                await self._sleep(self._backoff(status.restarts + 1))
                continue
            except (ConfigError, ValueError) as exc:
                self.event("Warning", "Failed", f"Error: {exc}")
                self._set(
                    name, state="waiting", reason="CreateContainerConfigError", message=str(exc)
                )
                await self._sleep(self._backoff(status.restarts + 1))
                continue
            if self._stop.is_set():  # deleted while the image was being made
                return False
            exit_code, ran = await self._run_once(container, image, launch)
            if self._stop.is_set():
                return exit_code == 0
            if init and exit_code == 0:
                return True
            if self.restart_policy == "Never" or (
                self.restart_policy == "OnFailure" and exit_code == 0
            ):
                return exit_code == 0
            restarts = status.restarts + 1
            if ran >= _BACKOFF_RESET:
                restarts = 1
            delay = self._backoff(restarts)
            self._set(
                name,
                state="waiting",
                reason="CrashLoopBackOff",
                message=f"back-off {delay:g}s restarting failed container={name} pod={self.name}",
                restarts=status.restarts + 1,
            )
            self.event(
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {name} in pod {self.name}",
            )
            await self._sleep(delay)
        return False

    async def _run_once(self, container: Obj, image: Image, launch: Launch) -> tuple[int, float]:
        name = container["name"]
        process = ContainerProcess(
            name, self.log_dir / f"{name}.log", self.dir / "launch" / f"{name}.json"
        )
        (self.dir / "launch").mkdir(parents=True, exist_ok=True)
        run = _Running(container, image, launch, process)
        await process.start(launch)
        self._running[name] = run
        if self._stop.is_set():  # deleted while starting: stop it as deletion would have
            run.kill.set()
        self.event("Normal", "Started", f"Started container {name}")
        self._set(
            name,
            state="running",
            reason="",
            message="",
            pid=process.pid,
            uid=launch.uid,
            started=False,
            ready=False,
        )
        probes = asyncio.create_task(self._probe(run))
        waiter = asyncio.create_task(process.wait())
        killer = asyncio.create_task(run.kill.wait())
        try:
            await asyncio.wait({waiter, killer}, return_when=asyncio.FIRST_COMPLETED)
            if killer.done() and not waiter.done():
                grace = self._deletion_grace if self._stop.is_set() else self._grace()
                await self._kill(run, grace)
            exit_code = await waiter
        finally:
            for task in (probes, killer):
                task.cancel()
            self._running.pop(name, None)
            process.reap_session()
        ran = time.monotonic() - process.started_at
        reason = (
            "Completed" if exit_code == 0 else ("StartError" if process.start_failed() else "Error")
        )
        if run.kill_reason:
            reason = run.kill_reason
        last = f"exit {exit_code} ({reason}), last log lines:\n{process.last_run(3)}"
        self._set(
            name,
            state="terminated",
            reason=reason,
            exit_code=exit_code,
            ready=False,
            started=False,
            pid=None,
            last_exit=last,
        )
        return exit_code, ran

    def _grace(self) -> float:
        return float(self.spec.get("terminationGracePeriodSeconds", 30))

    # -- probes ---------------------------------------------------------------------------

    async def _execute(self, run: _Running, argv: list[str], within: float) -> tuple[int, str]:
        pid = run.process.pid
        if pid is None:
            return -1, "container is not running"
        launch = Launch(
            sandbox_pid=run.launch.sandbox_pid,
            hostname=run.launch.hostname,
            argv=argv,
            env=run.launch.env,
            cwd=run.launch.cwd,
            uid=run.launch.uid,
            gid=run.launch.gid,
            groups=run.launch.groups,
            no_new_privs=run.launch.no_new_privs,
            death_signal=DEATH_SIGNAL,
            join_pid=pid,
        )
        path = self.dir / "launch" / f"{run.spec['name']}.exec-{uuid.uuid4().hex[:8]}.json"
        try:
            return await exec_in(launch, path, within)
        finally:
            path.unlink(missing_ok=True)

    async def _check(self, run: _Running, spec: ProbeSpec) -> Result:
        return await run_handler(
            spec.handler,
            container=run.spec,
            pod_ip=self.ip,
            within=spec.timeout,
            execute=lambda argv, within: self._execute(run, argv, within),
        )

    async def _probe(self, run: _Running) -> None:
        name = run.spec["name"]
        if self.statuses[name].init:
            return
        startup = run.spec.get("startupProbe")
        if startup and not await self._probe_loop(run, "Startup", ProbeSpec.parse(startup)):
            return
        self._set(name, started=True)
        loops = []
        for kind, key in (("Liveness", "livenessProbe"), ("Readiness", "readinessProbe")):
            if run.spec.get(key):
                loops.append(self._probe_loop(run, kind, ProbeSpec.parse(run.spec[key])))
        if not run.spec.get("readinessProbe"):
            self._set(name, ready=True)
        handler = (run.spec.get("lifecycle") or {}).get("postStart")
        if handler:
            result = await run_handler(
                handler,
                container=run.spec,
                pod_ip=self.ip,
                within=self._grace(),
                execute=lambda argv, within: self._execute(run, argv, within),
            )
            if not result.ok:
                self.event("Warning", "FailedPostStartHook", result.message)
                run.kill_reason = "FailedPostStartHook"
                run.kill.set()
                return
        await asyncio.gather(*loops)

    async def _probe_loop(self, run: _Running, kind: str, spec: ProbeSpec) -> bool:
        """Probe until the container ends; True when a startup probe has succeeded."""
        name = run.spec["name"]
        await asyncio.sleep(spec.initial_delay)
        successes = failures = 0
        while run.process.pid is not None:
            result = await self._check(run, spec)
            if result.ok:
                successes, failures = successes + 1, 0
            else:
                successes, failures = 0, failures + 1
                message = f"{kind} probe failed: {result.message}"
                self.event("Warning", "Unhealthy", message)
                self._set(name, probe_failure=message)
            if kind == "Startup" and successes >= 1:
                return True
            if kind == "Readiness":
                if successes >= spec.success_threshold:
                    self._set(name, ready=True)
                elif failures >= spec.failure_threshold:
                    self._set(name, ready=False)
            elif failures >= spec.failure_threshold:
                self.event(
                    "Normal",
                    "Killing",
                    f"Container {name} failed {kind.lower()} probe, will be restarted",
                )
                run.kill_reason = f"{kind}ProbeFailed"
                run.kill.set()
                return False
            await asyncio.sleep(spec.period)
        return False

    # -- termination ----------------------------------------------------------------------

    async def _kill(self, run: _Running, grace: float) -> None:
        """preStop, then the stop signal, then SIGKILL when ``grace`` is spent."""
        deadline = time.monotonic() + grace
        handler = (run.spec.get("lifecycle") or {}).get("preStop")
        if handler and grace > 0:
            try:
                result = await asyncio.wait_for(
                    run_handler(
                        handler,
                        container=run.spec,
                        pod_ip=self.ip,
                        within=grace,
                        execute=lambda argv, within: self._execute(run, argv, within),
                    ),
                    grace,
                )
                if not result.ok:
                    self.event("Warning", "FailedPreStopHook", result.message)
            except TimeoutError:
                self.event(
                    "Warning", "FailedPreStopHook", f"preStop hook still running after {grace:g}s"
                )
        await run.process.stop(run.image.stop_signal, max(deadline - time.monotonic(), 0.0))

    async def terminate(self, grace: float | None = None) -> None:
        """Delete the pod: no longer an endpoint, containers stopped within the grace period."""
        if self.terminating:
            if grace is not None and grace < self._deletion_grace:
                # Deleted again with a shorter grace period (a second Ctrl-C): cut it short.
                self._deletion_grace = grace
                await asyncio.gather(
                    *(r.process.stop(signal.SIGKILL, 0) for r in self._running.values())
                )
            if self.task is not None:
                await self.task
            return
        self.terminating = True
        self._stop.set()
        self.node.on_change()
        budget = self._grace() if grace is None else grace
        self._deletion_grace = budget
        self.event("Normal", "Killing", f"Stopping pod (grace period {budget:g}s)")
        await asyncio.gather(*(self._kill(run, budget) for run in list(self._running.values())))
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self._sandbox is not None and self._sandbox.returncode is None:
            self._sandbox.send_signal(signal.SIGKILL)
            await self._sandbox.wait()
        self.node.on_change()

    def describe(self) -> dict[str, Any]:
        """The pod's status as data (the runner's API and failure reports)."""
        return {
            "name": self.name,
            "phase": self.phase,
            "ip": self.ip,
            "sandbox_pid": self._sandbox.pid if self._sandbox is not None else None,
            "ready": self.ready,
            "terminating": self.terminating,
            "containers": [vars(s).copy() for s in self.statuses.values()],
            "events": [vars(e).copy() for e in self.events[-15:]],
        }
