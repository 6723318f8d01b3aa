"""Start one container's process as a container runtime would (``python -m …container``).

The kubelet (:mod:`chorus_chartrun.kubelet`) writes a :class:`Launch` as JSON and runs this
module as root; it then becomes the container's process:

1. joins the pod sandbox's network, UTS and IPC namespaces (one address and host name per
   pod, shared by its containers);
2. in a mount namespace of its own, assembles the container's root file system in a tmpfs:
   the machine's own files stand in for the image's (``/tmp`` and ``/run`` start empty, as in
   an image), the image's parts are bound where the image has them (``/app/.venv``), and
   directories a non-root user could not reach on the way to the interpreter are replaced by
   ones holding only that way;
3. makes that root read-only when the pod spec says ``readOnlyRootFilesystem``, then binds
   every volume at its ``mountPath`` (and the kubelet's ``/etc/hosts``, ``/etc/hostname``,
   ``/etc/resolv.conf``) — paths exactly as the chart wrote them;
4. chroots, takes the pod's user, groups and ``no_new_privs``, and execs the command with
   the environment the kubelet built.

Nothing touches the machine's own mounts: the mount namespace is private and dies with the
process. ``join`` mode (``Launch.join_pid``) enters a running container instead — exec
probes and ``exec`` preStop hooks. Kept to the standard library: it starts once per
container and per probe.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chorus_chartrun.linux import (
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWUTS,
    MS_BIND,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
    set_death_signal,
    set_no_new_privs,
    sethostname,
    setns,
    unshare,
)

__all__ = ["START_FAILED", "Launch", "Mount", "main"]

#: Exit status when the container could not be started (the runtime's error, not the app's).
START_FAILED = 128

#: Host directories an image brings empty of its own (never the machine's contents).
_EMPTY_IN_IMAGE = frozenset({"tmp", "run"})
#: Kernel file systems: bound as they are and left writable, as a runtime mounts them.
_KERNEL = ("/proc", "/sys", "/dev")
#: statvfs flags that are also mount flags with the same values (kept on remount).
_KEPT_FLAGS = 0x2 | 0x4 | 0x8 | 0x400 | 0x800 | 0x1000  # nosuid nodev noexec noatime ...


@dataclass
class Mount:
    """A host file or directory bound at ``target`` inside the container."""

    target: str
    source: str
    read_only: bool = False


@dataclass
class Launch:
    """Everything the runtime needs to start (or enter) one container."""

    sandbox_pid: int
    hostname: str
    argv: list[str]
    env: dict[str, str]
    cwd: str = "/"
    rootfs: str = ""
    uid: int | None = None
    gid: int | None = None
    groups: list[int] = field(default_factory=list)
    #: The image's parts: bound before the root turns read-only.
    image_mounts: list[Mount] = field(default_factory=list)
    #: Host paths the container's user must reach (the interpreter, the workspace).
    expose: list[str] = field(default_factory=list)
    #: Volumes and kubelet-managed files, bound after the root turns read-only.
    mounts: list[Mount] = field(default_factory=list)
    #: Host directories no container may see (the kubelet's own: every pod's volumes).
    hidden: list[str] = field(default_factory=list)
    read_only_root: bool = False
    no_new_privs: bool = False
    death_signal: int = 15
    #: Enter this running container (its mount namespace and root) instead of building one.
    join_pid: int | None = None

    def dump(self, path: Path) -> None:
        """Write the launch as JSON for the child to read."""
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> Launch:
        """Read a launch written by :meth:`dump`."""
        raw: dict[str, Any] = json.loads(path.read_text())
        for key in ("image_mounts", "mounts"):
            raw[key] = [Mount(**m) for m in raw[key]]
        return cls(**raw)


class StartError(Exception):
    """The container cannot start; the message says why (shown as the container's error)."""


class RootFs:
    """The container's root being assembled under ``root`` (a tmpfs), before ``chroot``."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")
        #: Container directories backed by our tmpfs: we may create entries in them.
        self.owned: set[str] = {"/"}
        #: Container path → host path of each bind (the longest prefix tells a path's origin).
        self.binds: dict[str, str] = {}
        #: Owned directories that replaced a bound one → the host directory they stand for.
        self.shadowed: dict[str, str] = {}

    def host(self, path: str) -> str:
        """Where container ``path`` is, seen from outside the chroot."""
        return self.root + path if path != "/" else self.root

    def _origin(self, path: str) -> str:
        best = max((p for p in self.binds if path == p or path.startswith(p + "/")), key=len)
        return self.binds[best] + path[len(best) :]

    def _mirror(self, host_path: str, path: str) -> None:
        """Put host ``host_path`` at container ``path`` (inside an owned directory)."""
        target = self.host(path)
        if os.path.islink(host_path):
            os.symlink(os.readlink(host_path), target)
            return
        if os.path.isdir(host_path):
            os.mkdir(target, 0o755)
            mount(host_path, target, None, MS_BIND | MS_REC)
        else:
            Path(target).touch(0o644)
            mount(host_path, target, None, MS_BIND)
        self.binds[path] = host_path

    def assemble(self) -> None:
        """The machine's top-level entries, except what an image has empty."""
        mount("tmpfs", self.root, "tmpfs", 0, "mode=755")
        for entry in sorted(os.listdir("/")):
            if entry in _EMPTY_IN_IMAGE:
                os.mkdir(self.host(f"/{entry}"), 0o1777 if entry == "tmp" else 0o755)
                self.owned.add(f"/{entry}")
                continue
            self._mirror(f"/{entry}", f"/{entry}")

    def _own(self, path: str, only: str | None = None) -> None:
        """Replace bound directory ``path`` by a tmpfs holding its entries (or just ``only``)."""
        child = f"{path.rstrip('/')}/{only}"
        if path in self.owned:
            origin = self.shadowed.get(path)
            if only is not None and origin is not None and not os.path.lexists(self.host(child)):
                self._mirror(f"{origin}/{only}", child)
            return
        origin = self._origin(path)
        mount("tmpfs", self.host(path), "tmpfs", 0, "mode=755")
        self.owned.add(path)
        self.shadowed[path] = origin
        for entry in sorted(os.listdir(origin)) if only is None else [only]:
            self._mirror(f"{origin}/{entry}", f"{path.rstrip('/')}/{entry}")

    def resolve(self, path: str, *, create: str | None = None, depth: int = 0) -> str:
        """The container path ``path`` names once symlinks are followed inside the root.

        ``create`` ("dir" or "file"): make what is missing, in tmpfs-backed directories
        (a bound directory is first replaced by one, so the machine is never written).
        """
        if depth > 40:
            msg = f"too many levels of symbolic links in {path}"
            raise StartError(msg)
        parts = [p for p in path.split("/") if p and p != "."]
        current = "/"
        for index, part in enumerate(parts):
            if part == "..":
                current = os.path.dirname(current) or "/"
                continue
            candidate = f"{current.rstrip('/')}/{part}"
            host = self.host(candidate)
            if os.path.islink(host):
                link = os.readlink(host)
                rest = "/".join(parts[index + 1 :])
                base = link if link.startswith("/") else f"{current}/{link}"
                return self.resolve(f"{base}/{rest}", create=create, depth=depth + 1)
            if not os.path.lexists(host):
                if create is None:
                    msg = f"{candidate}: no such file or directory"
                    raise StartError(msg)
                self._own(current)
                if create == "file" and index == len(parts) - 1:
                    Path(host).touch(0o644)
                else:
                    os.mkdir(host, 0o755)
                    self.owned.add(candidate)
            current = candidate
        return current

    def expose(self, host_path: str, uid: int, groups: set[int]) -> None:
        """Let ``uid`` reach ``host_path``: closed directories on the way show only that way."""
        current = "/"
        for part in [p for p in host_path.split("/") if p]:
            info = os.stat(current)
            if uid == info.st_uid:
                allowed = info.st_mode & stat.S_IXUSR
            elif info.st_gid in groups:
                allowed = info.st_mode & stat.S_IXGRP
            else:
                allowed = info.st_mode & stat.S_IXOTH
            if not allowed:
                self._own(current, only=part)
            current = f"{current.rstrip('/')}/{part}"

    def bind(self, item: Mount) -> None:
        """Bind a volume (or image part) at its target, read-only when asked."""
        if not os.path.exists(item.source):
            msg = f"mount source {item.source} for {item.target} does not exist"
            raise StartError(msg)
        kind = "dir" if os.path.isdir(item.source) else "file"
        path = self.resolve(item.target, create=kind)
        target = self.host(path)
        mount(item.source, target, None, MS_BIND | MS_REC)
        self.binds[path] = item.source
        if item.read_only:
            flags = os.statvfs(target).f_flag & _KEPT_FLAGS
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)

    def hide(self, host_path: str) -> None:
        """Cover ``host_path`` (where the machine's files show it) with an empty directory."""
        try:
            path = self.resolve(host_path)
        except StartError:
            return  # not visible in this root anyway
        if os.path.isdir(self.host(path)):
            mount("tmpfs", self.host(path), "tmpfs", MS_RDONLY, "mode=755")

    def read_only(self) -> None:
        """Every mount of the root (not the kernel's) becomes read-only."""
        kernel = tuple(self.host(k) for k in _KERNEL)
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            points = [line.split()[4].replace("\\040", " ") for line in handle]
        for point in points:
            inside = point == self.root or point.startswith(self.root + "/")
            if not inside or point.startswith(kernel):
                continue
            flags = os.statvfs(point).f_flag & _KEPT_FLAGS
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def _enter_sandbox(launch: Launch) -> None:
    for kind, flag in (("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS), ("ipc", CLONE_NEWIPC)):
        setns(f"/proc/{launch.sandbox_pid}/ns/{kind}", flag)


def _build(launch: Launch) -> None:
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    sethostname(launch.hostname)
    os.makedirs(launch.rootfs, exist_ok=True)
    fs = RootFs(launch.rootfs)
    fs.assemble()
    if launch.uid not in (None, 0):
        groups = {g for g in (launch.gid, *launch.groups) if g is not None}
        for path in launch.expose:
            fs.expose(path, launch.uid, groups)
    for item in launch.image_mounts:
        fs.bind(item)
    for item in launch.mounts:
        kind = "dir" if os.path.isdir(item.source) else "file"
        fs.resolve(item.target, create=kind)
    for path in launch.hidden:
        fs.hide(path)
    if launch.read_only_root:
        fs.read_only()
    for item in launch.mounts:
        fs.bind(item)
    os.chroot(fs.root)


def _join(launch: Launch) -> None:
    assert launch.join_pid is not None
    root = os.open(f"/proc/{launch.join_pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    setns(f"/proc/{launch.join_pid}/ns/mnt", CLONE_NEWNS)
    os.fchdir(root)
    os.chroot(".")
    os.close(root)


def _become(launch: Launch, parent: int) -> None:
    if launch.gid is not None or launch.groups:
        os.setgroups(sorted({g for g in (launch.gid, *launch.groups) if g is not None}))
    if launch.gid is not None:
        os.setgid(launch.gid)
    if launch.uid is not None:
        os.setuid(launch.uid)
    if launch.no_new_privs:
        set_no_new_privs()
    # A change of user clears the parent-death signal: set it again, then make sure the
    # kubelet did not die in between (the signal would never come).
    set_death_signal(launch.death_signal)
    if os.getppid() != parent:
        raise SystemExit(START_FAILED)


def start(launch: Launch) -> None:
    """Become the container's process (never returns on success)."""
    parent = os.getppid()
    _enter_sandbox(launch)
    if launch.join_pid is None:
        _build(launch)
    else:
        _join(launch)
    try:
        os.chdir(launch.cwd)
    except OSError as exc:
        msg = f"chdir to cwd ({launch.cwd!r}) set in config.json failed: {exc.strerror}"
        raise StartError(msg) from None
    _become(launch, parent)
    try:
        os.execvpe(launch.argv[0], launch.argv, launch.env)  # noqa: S606 - the container's argv
    except OSError as exc:
        msg = f'exec: "{launch.argv[0]}": {exc.strerror} (PATH={launch.env.get("PATH", "")})'
        raise StartError(msg) from None


def main() -> None:
    """``python -m chorus_chartrun.container LAUNCH.json``."""
    try:
        start(Launch.load(Path(sys.argv[1])))
    except (StartError, OSError) as exc:
        sys.stderr.write(f"chart-run: failed to start container: {exc}\n")
        sys.stderr.flush()
        raise SystemExit(START_FAILED) from None


if __name__ == "__main__":
    main()
