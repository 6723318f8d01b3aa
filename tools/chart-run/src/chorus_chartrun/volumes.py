"""A pod's volumes, materialised as the kubelet materialises them, and its containers' mounts.

Each volume becomes a directory of the pod's (``emptyDir``), a directory of the claim's that
outlives the pod (``persistentVolumeClaim``, the StatefulSet's ``volumeClaimTemplates``),
or the files of a ConfigMap or Secret (every key, or the ``items`` asked for, each with its
``mode`` or the volume's ``defaultMode``). With a pod ``fsGroup`` the kubelet gives the files
to that group (and writable volumes group-write and setgid directories), so a non-root
container can use them. Each ``volumeMount`` (with ``subPath``) becomes a
:class:`~chorus_chartrun.container.Mount` at the chart's ``mountPath``, unchanged.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from chorus_chartrun.container import Mount
from chorus_chartrun.envvars import ConfigError, expand
from chorus_chartrun.objects import NotFoundError, Store, config_data, secret_data
from chorus_chartrun.release import Obj

__all__ = ["PodVolumes", "VolumeError"]

_DEFAULT_MODE = 0o644


class VolumeError(ConfigError):
    """A volume cannot be set up (``FailedMount``); the message is the kubelet's."""


def _owned_by_group(path: Path, gid: int | None, *, writable: bool) -> None:
    """What the kubelet does for ``fsGroup``: the group owns it, reads (and writes) it."""
    if gid is None:
        return
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs)]:
            os.chown(name, -1, gid)
            mode = stat.S_IMODE(os.stat(name).st_mode) | stat.S_ISGID | 0o050
            os.chmod(name, mode | (0o020 if writable else 0))
        for name in (os.path.join(root, f) for f in files):
            os.chown(name, -1, gid)
            mode = stat.S_IMODE(os.stat(name).st_mode) | 0o040
            os.chmod(name, mode | (0o020 if writable else 0))


class PodVolumes:
    """The volumes of one pod under ``directory`` (claims under ``claims``)."""

    def __init__(
        self,
        pod: Obj,
        *,
        store: Store,
        directory: Path,
        claims: Path,
    ) -> None:
        self.pod = pod
        self.store = store
        self.directory = directory
        self.claims = claims
        self.namespace = pod["metadata"]["namespace"]
        self.fs_group: int | None = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        self.paths: dict[str, Path] = {}

    def set_up(self) -> None:
        """Materialise every volume; VolumeError names the first that cannot be."""
        for volume in self.pod["spec"].get("volumes") or []:
            self.paths[volume["name"]] = self._set_up(volume)

    def _set_up(self, volume: Obj) -> Path:
        name: str = volume["name"]
        target = self.directory / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            _owned_by_group(target, self.fs_group, writable=True)
            return target
        if "persistentVolumeClaim" in volume:
            claim: str = volume["persistentVolumeClaim"]["claimName"]
            try:
                self.store.get("PersistentVolumeClaim", self.namespace, claim)
            except NotFoundError as exc:
                msg = f'MountVolume.SetUp failed for volume "{name}" : {exc}'
                raise VolumeError(msg) from None
            path = self.claims / claim
            fresh = not path.exists()
            path.mkdir(parents=True, exist_ok=True)
            if fresh:  # fsGroupChangePolicy OnRootMismatch: only a new volume is changed
                path.chmod(0o755)
                _owned_by_group(path, self.fs_group, writable=True)
            return path
        for kind, key, ref_key in (
            ("ConfigMap", "configMap", "name"),
            ("Secret", "secret", "secretName"),
        ):
            if key in volume:
                return self._files(name, kind, volume[key], volume[key][ref_key], target)
        msg = f'volume "{name}": type {sorted(set(volume) - {"name"})} is not supported'
        raise VolumeError(msg)

    def _files(self, name: str, kind: str, spec: Mapping[str, Any], ref: str, target: Path) -> Path:
        optional = bool(spec.get("optional", False))
        try:
            obj = self.store.get(kind, self.namespace, ref)
            data = secret_data(obj) if kind == "Secret" else config_data(obj)
        except NotFoundError as exc:
            if not optional:
                msg = f'MountVolume.SetUp failed for volume "{name}" : {exc}'
                raise VolumeError(msg) from None
            data = {}
        items = spec.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        default_mode = int(spec.get("defaultMode", _DEFAULT_MODE))
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                what = "secret" if kind == "Secret" else "config"
                msg = (
                    f'MountVolume.SetUp failed for volume "{name}" : {kind.lower()} '
                    f"references non-existent {what} key: {item['key']}"
                )
                raise VolumeError(msg)
            relative = PurePosixPath(item["path"])
            if relative.is_absolute() or ".." in relative.parts:
                msg = f'volume "{name}": item path {item["path"]!r} must be relative, without ..'
                raise VolumeError(msg)
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            path.chmod(int(item.get("mode", default_mode)))
        target.chmod(0o755)
        _owned_by_group(target, self.fs_group, writable=False)
        return target

    def mounts(self, container: Obj, env: Mapping[str, str]) -> list[Mount]:
        """The container's ``volumeMounts`` as binds (``subPath`` and ``subPathExpr`` resolved)."""
        found: list[Mount] = []
        for mount in container.get("volumeMounts") or []:
            name = mount["name"]
            if name not in self.paths:
                msg = f'volumeMount "{name}" at {mount["mountPath"]}: no volume of that name'
                raise VolumeError(msg)
            source = self.paths[name]
            sub = mount.get("subPath") or ""
            if mount.get("subPathExpr"):
                sub = expand(mount["subPathExpr"], env.get)
            if sub:
                relative = PurePosixPath(sub)
                if relative.is_absolute() or ".." in relative.parts:
                    msg = f"subPath {sub!r} of volume {name!r} must be relative, without .."
                    raise VolumeError(msg)
                source = source / relative
                if not source.exists():  # the kubelet creates a missing subPath directory
                    source.mkdir(parents=True)
                    _owned_by_group(source, self.fs_group, writable=True)
            found.append(
                Mount(
                    target=mount["mountPath"],
                    source=str(source),
                    read_only=bool(mount.get("readOnly", False)),
                )
            )
        return found
