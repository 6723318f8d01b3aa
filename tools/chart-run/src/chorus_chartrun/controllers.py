"""Controllers: Deployments, StatefulSets, Jobs and bare Pods, turned into pods.

- **Deployment**: ``replicas`` pods (an HPA's ``minReplicas``/``maxReplicas`` bound it, as the
  autoscaler would at once), named ``<name>-<template hash>-<suffix>``, labelled with
  ``pod-template-hash``. Ready as ``helm --wait`` judges it: ready replicas at least replicas
  minus ``maxUnavailable``.
- **StatefulSet**: pods ``<name>-0`` … started in order, the next once the previous is ready
  (``OrderedReady``), each with its claims from ``volumeClaimTemplates``
  (``<template>-<pod>``), which outlive the pod. Ready when every replica is.
- **Job**: one pod at a time until one succeeds; with ``restartPolicy: OnFailure`` the
  container restarts in place and its restarts count against ``backoffLimit``; with
  ``Never`` each failure is a new pod. ``activeDeadlineSeconds`` bounds it all.
- **Pod**: run once, as written.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import math
import random
import time
from typing import Any

from chorus_chartrun.kubelet import Node, Pod
from chorus_chartrun.release import Obj

__all__ = ["Controller", "controller_for"]

_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_TICK = 0.2


def _backoff_exceeded(limit: int) -> str:
    return f"BackoffLimitExceeded: Job has reached the specified backoff limit ({limit})"


def _suffix(length: int = 5) -> str:
    return "".join(random.choice(_SAFE) for _ in range(length))  # noqa: S311 - names, not secrets


def _hash(template: Obj) -> str:
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    out = []
    for _ in range(10):
        digest, index = divmod(digest, len(_SAFE))
        out.append(_SAFE[index])
    return "".join(out)


class Controller:
    """One workload of the release and the pods it owns."""

    kind = ""

    def __init__(self, obj: Obj, node: Node) -> None:
        self.obj = obj
        self.node = node
        self.name: str = obj["metadata"]["name"]
        self.namespace: str = obj["metadata"]["namespace"]
        self.pods: list[Pod] = []
        self.failure = ""
        self.task: asyncio.Task[None] | None = None

    @property
    def ref(self) -> str:
        """``Kind/name``."""
        return f"{self.kind}/{self.name}"

    def _pod(self, name: str, template: Obj, labels: dict[str, str] | None = None) -> Pod:
        spec = copy.deepcopy(template.get("spec") or {})
        meta = copy.deepcopy(template.get("metadata") or {})
        meta["labels"] = {**(meta.get("labels") or {}), **(labels or {})}
        meta.update(name=name, namespace=self.namespace)
        meta["ownerReferences"] = [{"kind": self.kind, "name": self.name}]
        pod = Pod({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}, self.node)
        self.pods.append(pod)
        pod.start()
        self.node.on_change()
        return pod

    def start(self) -> None:
        """Begin reconciling."""
        self.task = asyncio.create_task(self.run(), name=f"controller:{self.ref}")

    async def run(self) -> None:
        """Create pods and keep them as the workload says."""
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether ``helm install --wait`` would consider this workload ready."""
        raise NotImplementedError

    def summary(self) -> str:
        """One line: ready counts or completion."""
        ready = sum(p.ready for p in self.pods)
        return f"{ready}/{len(self.pods)} ready"

    async def stop(self, grace: float | None = None) -> None:
        """Delete the workload: every pod terminated (with its grace period unless given)."""
        if self.task is not None:
            self.task.cancel()
        await asyncio.gather(*(p.terminate(grace) for p in self.pods))


class DeploymentController(Controller):
    """A Deployment (its ReplicaSet folded in)."""

    kind = "Deployment"

    def __init__(self, obj: Obj, node: Node, *, hpa: Obj | None = None) -> None:
        super().__init__(obj, node)
        replicas = int(obj["spec"].get("replicas", 1))
        if hpa is not None:
            spec = hpa["spec"]
            replicas = min(max(replicas, int(spec.get("minReplicas", 1))), int(spec["maxReplicas"]))
        self.replicas = replicas
        self.template = obj["spec"]["template"]
        self.template_hash = _hash(self.template)

    async def run(self) -> None:
        """Keep ``replicas`` pods (a pod that ended is replaced)."""
        while True:
            for pod in [
                p for p in self.pods if p.phase in ("Succeeded", "Failed") and not p.terminating
            ]:
                await pod.terminate(0)
                self.pods.remove(pod)
            while len(self.pods) < self.replicas:
                name = f"{self.name}-{self.template_hash}-{_suffix()}"
                self._pod(name, self.template, {"pod-template-hash": self.template_hash})
            await asyncio.sleep(_TICK)

    def _max_unavailable(self) -> int:
        rolling = ((self.obj["spec"].get("strategy") or {}).get("rollingUpdate")) or {}
        raw = rolling.get("maxUnavailable", "25%")
        if isinstance(raw, str) and raw.endswith("%"):
            return math.floor(self.replicas * int(raw[:-1]) / 100)
        return int(raw)

    def ready(self) -> bool:
        """Ready replicas at least replicas minus maxUnavailable (helm's deploymentReady)."""
        ready = sum(p.ready for p in self.pods)
        return len(self.pods) >= self.replicas and ready >= self.replicas - self._max_unavailable()

    def summary(self) -> str:
        """``ready/replicas``."""
        return f"{sum(p.ready for p in self.pods)}/{self.replicas} ready"


class StatefulSetController(Controller):
    """A StatefulSet with OrderedReady pod management."""

    kind = "StatefulSet"

    def __init__(self, obj: Obj, node: Node) -> None:
        super().__init__(obj, node)
        self.replicas = int(obj["spec"].get("replicas", 1))
        self.template = obj["spec"]["template"]

    def _claims(self, pod_name: str) -> list[Obj]:
        volumes = []
        for template in self.obj["spec"].get("volumeClaimTemplates") or []:
            claim = f"{template['metadata']['name']}-{pod_name}"
            self.node.store.apply(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "namespace": self.namespace},
                    "spec": copy.deepcopy(template.get("spec") or {}),
                }
            )
            volumes.append(
                {
                    "name": template["metadata"]["name"],
                    "persistentVolumeClaim": {"claimName": claim},
                }
            )
        return volumes

    async def run(self) -> None:
        """Create ``<name>-<i>`` in order, each after the previous is ready; recreate ended ones."""
        for index in range(self.replicas):
            name = f"{self.name}-{index}"
            template = copy.deepcopy(self.template)
            template.setdefault("spec", {})
            template["spec"]["volumes"] = [
                *(template["spec"].get("volumes") or []),
                *self._claims(name),
            ]
            template["spec"].setdefault("hostname", name)
            template["spec"].setdefault("subdomain", self.obj["spec"].get("serviceName", ""))
            self._pod(name, template, {"statefulset.kubernetes.io/pod-name": name})
            await self.pods[-1].became_ready.wait()
        while True:
            for index, pod in enumerate(list(self.pods)):
                if pod.phase in ("Succeeded", "Failed") and not pod.terminating:
                    await pod.terminate(0)
                    self.pods.remove(pod)
                    self._pod(pod.name, {"metadata": pod.obj["metadata"], "spec": pod.spec})
                    self.pods.insert(index, self.pods.pop())
            await asyncio.sleep(_TICK)

    def ready(self) -> bool:
        """Every replica ready."""
        return len(self.pods) == self.replicas and all(p.ready for p in self.pods)

    def summary(self) -> str:
        """``ready/replicas``."""
        return f"{sum(p.ready for p in self.pods)}/{self.replicas} ready"


class JobController(Controller):
    """A Job with one completion."""

    kind = "Job"

    def __init__(self, obj: Obj, node: Node) -> None:
        super().__init__(obj, node)
        spec = obj["spec"]
        self.backoff_limit = int(spec.get("backoffLimit", 6))
        self.deadline = spec.get("activeDeadlineSeconds")
        self.template = spec["template"]
        self.succeeded = False
        self.failures = 0

    async def run(self) -> None:
        """Run pods until one succeeds, the back-off limit or the deadline is reached."""
        started = time.monotonic()
        pod = self._new_pod()
        while True:
            await asyncio.sleep(_TICK)
            restarts = sum(s.restarts for s in pod.statuses.values())
            if pod.phase == "Succeeded":
                self.succeeded = True
                await pod.terminate(0)
                self.node.on_change()
                return
            if pod.phase == "Failed":
                self.failures += 1
                await pod.terminate(0)
                if self.failures > self.backoff_limit:
                    self.failure = _backoff_exceeded(self.backoff_limit)
                    return
                await asyncio.sleep(
                    min(self.node.backoff_initial * 2 ** (self.failures - 1), self.node.backoff_max)
                )
                pod = self._new_pod()
            elif restarts > self.backoff_limit:
                self.failure = _backoff_exceeded(self.backoff_limit)
                await pod.terminate()
                return
            if self.deadline is not None and time.monotonic() - started > float(self.deadline):
                self.failure = "DeadlineExceeded: Job was active longer than specified deadline"
                await pod.terminate()
                return

    def _new_pod(self) -> Pod:
        labels = {"job-name": self.name, "batch.kubernetes.io/job-name": self.name}
        return self._pod(f"{self.name}-{_suffix()}", self.template, labels)

    def ready(self) -> bool:
        """Complete."""
        return self.succeeded

    def summary(self) -> str:
        """Complete, failed, or running."""
        if self.succeeded:
            return "Complete"
        if self.failure:
            return f"Failed ({self.failure})"
        restarts = sum(s.restarts for p in self.pods for s in p.statuses.values())
        return f"running (pod failures {self.failures}, container restarts {restarts})"


class PodController(Controller):
    """A bare Pod (the ``helm test`` Pod is one)."""

    kind = "Pod"

    async def run(self) -> None:
        """Run the pod once."""
        self._pod(self.name, {"metadata": self.obj["metadata"], "spec": self.obj["spec"]})

    def ready(self) -> bool:
        """Running and ready, or done with success."""
        return bool(self.pods) and (self.pods[0].ready or self.pods[0].phase == "Succeeded")

    def summary(self) -> str:
        """The pod's phase."""
        return self.pods[0].phase if self.pods else "Pending"


def controller_for(obj: Obj, node: Node, *, hpas: dict[str, Obj]) -> Controller | None:
    """The controller of a workload object (None for objects that run nothing)."""
    kind: str = obj["kind"]
    if kind == "Deployment":
        return DeploymentController(obj, node, hpa=hpas.get(obj["metadata"]["name"]))
    if kind == "StatefulSet":
        return StatefulSetController(obj, node)
    if kind == "Job":
        return JobController(obj, node)
    if kind == "Pod":
        return PodController(obj, node)
    return None


def describe_failure(controller: Controller) -> dict[str, Any]:
    """The workload's state as data."""
    return {
        "workload": controller.ref,
        "summary": controller.summary(),
        "pods": [p.describe() for p in controller.pods],
    }
