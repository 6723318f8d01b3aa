"""Peers that are not workspace dependencies, installed on a bench's first run.

A peer (the LiteLLM proxy, python-socketio, Portkey's gateway) must never enter the
workspace lock, so each one lives in a directory of its own under ``bench/.venvs/`` (ignored
by git): a Python venv made with uv, or an npm prefix. A marker written last records what
was installed, so an interrupted install, or a changed package list, is redone on the next
run and a finished one is reused as is.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LITELLM",
    "MARKER",
    "PEERS",
    "PORTKEY",
    "REALTIME_PEERS",
    "Peer",
    "PeerInstallError",
    "node_prefix",
    "python_venv",
    "uv_command",
]

#: Written into a peer's directory once its install finished: the packages, one a line.
MARKER = ".installed"


class PeerInstallError(RuntimeError):
    """A peer could not be installed (a missing tool, or its installer failed)."""


def uv_command() -> list[str]:
    """How to run uv: on PATH, as ``$UV`` (what ``make`` uses), or as a module."""
    found = shutil.which("uv")
    if found:
        return [found]
    configured = os.environ.get("UV", "").strip()
    if configured:
        return shlex.split(configured)
    for python in (shutil.which("python3"), sys.executable):
        if python and _runs([python, "-m", "uv", "--version"]):
            return [python, "-m", "uv"]
    msg = "uv is not installed (`make venv` installs it with pip)"
    raise PeerInstallError(msg)


def _runs(argv: Sequence[str]) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _wanted(packages: Sequence[str]) -> str:
    return "".join(f"{package}\n" for package in packages)


def _installed(directory: Path, packages: Sequence[str]) -> bool:
    marker = directory / MARKER
    return marker.is_file() and marker.read_text(encoding="utf-8") == _wanted(packages)


def _run(argv: Sequence[str], what: str) -> None:
    try:
        done = subprocess.run(argv, check=False)
    except OSError as exc:
        msg = f"{what}: {exc}"
        raise PeerInstallError(msg) from exc
    if done.returncode != 0:
        msg = f"{what}: `{shlex.join(argv)}` exited with {done.returncode}"
        raise PeerInstallError(msg)


def _venvs(root: Path) -> Path:
    venvs = root / "bench" / ".venvs"
    venvs.mkdir(parents=True, exist_ok=True)
    return venvs


def python_venv(
    root: Path, name: str, packages: Sequence[str], *, python: str = sys.executable
) -> Path:
    """The interpreter of ``bench/.venvs/<name>``, with ``packages`` installed by uv."""
    venv = _venvs(root) / name
    interpreter = venv / "bin" / "python"
    if _installed(venv, packages) and interpreter.exists():
        return interpreter
    print(f"installing {' '.join(packages)} into bench/.venvs/{name} (first run only)", flush=True)
    (venv / MARKER).unlink(missing_ok=True)
    uv = uv_command()
    _run([*uv, "venv", "-q", "--clear", "--python", python, str(venv)], f"creating {name}")
    # Compiled now, not at the peer's first start (LiteLLM's first import would otherwise
    # compile thousands of modules inside the benchmark's wait for it to be ready).
    _run(
        [
            *uv,
            "pip",
            "install",
            "-q",
            "--compile-bytecode",
            "--python",
            str(interpreter),
            *packages,
        ],
        f"installing into {name}",
    )
    (venv / MARKER).write_text(_wanted(packages), encoding="utf-8")
    return interpreter


def node_prefix(root: Path, name: str, packages: Sequence[str]) -> Path:
    """``bench/.venvs/<name>``, an npm prefix with ``packages`` in its ``node_modules``."""
    prefix = _venvs(root) / name
    if _installed(prefix, packages) and (prefix / "node_modules").is_dir():
        return prefix
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        msg = "node and npm are needed (Debian: apt-get install nodejs npm)"
        raise PeerInstallError(msg)
    print(f"installing {' '.join(packages)} into bench/.venvs/{name} (first run only)", flush=True)
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / MARKER).unlink(missing_ok=True)
    _run(
        [
            npm,
            "install",
            "--prefix",
            str(prefix),
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            *packages,
        ],
        f"installing into {name}",
    )
    (prefix / MARKER).write_text(_wanted(packages), encoding="utf-8")
    return prefix


@dataclass(frozen=True)
class Peer:
    """A peer some benches need, installed into ``bench/.venvs/<name>``.

    The package list is the cache key (the marker): pin a version to know what ran, and a
    changed pin is installed afresh on the next run.
    """

    name: str
    packages: tuple[str, ...]
    benches: tuple[str, ...]
    node: bool = False

    def install(self, root: Path) -> Path:
        """The venv's interpreter or the npm prefix; installed on first use, then reused."""
        if self.node:
            return node_prefix(root, self.name, self.packages)
        return python_venv(root, self.name, self.packages)


REALTIME_PEERS = Peer(
    "realtime-peers",
    ("python-socketio>=5.11", "redis>=5", "uvicorn[standard]>=0.30", "orjson"),
    ("realtime_fanout", "realtime_rooms"),
)
LITELLM = Peer("litellm", ("litellm[proxy]",), ("gateway_llm",))
PORTKEY = Peer("portkey", ("@portkey-ai/gateway@1.15.2",), ("gateway_llm",), node=True)
#: Every peer, so that ``bench/run.py`` can install the ones a run needs side by side first.
PEERS = (REALTIME_PEERS, LITELLM, PORTKEY)
