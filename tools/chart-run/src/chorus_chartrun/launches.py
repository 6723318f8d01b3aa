"""From a pod's container spec to a :class:`~chorus_chartrun.container.Launch`.

The kubelet's part (environment, command and arguments with ``$(VAR)`` expanded, volume
mounts, the security context) combined with the runtime's part (the image's environment,
entrypoint, working directory and user; ``HOSTNAME`` and ``HOME``) exactly as Kubernetes
combines them: ``command`` replaces the image's ``ENTRYPOINT`` and drops its ``CMD``,
``args`` replace ``CMD``; the container's variables win over the image's.
"""

from __future__ import annotations

import pwd
from collections.abc import Mapping
from typing import Any

from chorus_chartrun.container import Launch, Mount
from chorus_chartrun.envvars import ConfigError, expand
from chorus_chartrun.images import Image
from chorus_chartrun.release import Obj

__all__ = ["build_launch", "unsupported_fields"]

#: Pod and container fields whose effect chart-run does not reproduce: refused, not ignored.
_UNSUPPORTED_POD = (
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "shareProcessNamespace",
    "ephemeralContainers",
)
_UNSUPPORTED_CONTAINER = ("resizePolicy", "stdin", "tty")


def unsupported_fields(pod: Obj) -> list[str]:
    """Fields of ``pod`` this kubelet cannot honour (it refuses to run such a pod)."""
    spec = pod["spec"]
    found = [f"spec.{f}" for f in _UNSUPPORTED_POD if spec.get(f)]
    for kind in ("initContainers", "containers"):
        for container in spec.get(kind) or []:
            found += [
                f"{kind}[{container['name']}].{f}"
                for f in _UNSUPPORTED_CONTAINER
                if container.get(f)
            ]
            if kind == "initContainers" and container.get("restartPolicy"):
                found.append(f"initContainers[{container['name']}].restartPolicy (sidecars)")
            context = container.get("securityContext") or {}
            if context.get("privileged"):
                found.append(f"{kind}[{container['name']}].securityContext.privileged")
            if (context.get("capabilities") or {}).get("add"):
                found.append(f"{kind}[{container['name']}].securityContext.capabilities.add")
    if spec.get("automountServiceAccountToken", True):
        found.append("spec.automountServiceAccountToken (no API server to issue a token)")
    return found


def _home(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_dir
    except KeyError:
        return "/"


def _identity(pod_spec: Obj, container: Obj, image: Image) -> tuple[int, int, list[int]]:
    pod_context = pod_spec.get("securityContext") or {}
    own = container.get("securityContext") or {}
    uid = own.get("runAsUser", pod_context.get("runAsUser", image.uid))
    gid = own.get("runAsGroup", pod_context.get("runAsGroup", image.gid))
    non_root = own.get("runAsNonRoot", pod_context.get("runAsNonRoot", False))
    if uid is None:
        uid = 0
    if non_root and uid == 0:
        msg = "container has runAsNonRoot and image will run as root"
        raise ConfigError(msg)
    groups = [*(pod_context.get("supplementalGroups") or [])]
    if pod_context.get("fsGroup") is not None:
        groups.append(int(pod_context["fsGroup"]))
    return int(uid), int(gid if gid is not None else 0), groups


def _argv(container: Obj, image: Image, env: Mapping[str, str]) -> list[str]:
    def expanded(items: list[Any]) -> list[str]:
        return [expand(str(item), env.get) for item in items]

    if container.get("command"):
        argv = expanded(container["command"]) + expanded(container.get("args") or [])
    elif container.get("args"):
        argv = image.entrypoint + expanded(container["args"])
    else:
        argv = image.entrypoint + image.cmd
    if not argv:
        msg = "no command specified"
        raise ConfigError(msg)
    return argv


def build_launch(
    *,
    pod: Obj,
    container: Obj,
    image: Image,
    env: Mapping[str, str],
    volume_mounts: list[Mount],
    files: Mapping[str, str],
    sandbox_pid: int,
    hostname: str,
    rootfs: str,
) -> Launch:
    """The launch of ``container``; ``files`` maps /etc/hosts etc. to the kubelet's copies."""
    spec = pod["spec"]
    uid, gid, groups = _identity(spec, container, image)
    context = container.get("securityContext") or {}
    process_env = dict(image.env)
    process_env["HOSTNAME"] = hostname
    process_env.update(env)
    process_env.setdefault("HOME", _home(uid))
    targets = {m.target.rstrip("/") for m in volume_mounts}
    kubelet_mounts = [Mount(t, s, read_only=False) for t, s in files.items() if t not in targets]
    return Launch(
        sandbox_pid=sandbox_pid,
        hostname=hostname,
        argv=_argv(container, image, env),
        env=process_env,
        cwd=container.get("workingDir") or image.workdir,
        rootfs=rootfs,
        uid=uid,
        gid=gid,
        groups=groups,
        image_mounts=list(image.mounts),
        expose=list(image.expose),
        mounts=[*volume_mounts, *kubelet_mounts],
        read_only_root=bool(context.get("readOnlyRootFilesystem", False)),
        no_new_privs=context.get("allowPrivilegeEscalation") is False,
    )
