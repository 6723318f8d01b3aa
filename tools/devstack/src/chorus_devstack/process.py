"""One child process of the devstack: started, watched, waited on, and stopped for sure.

Children run in their own session (Ctrl-C reaches only the devstack, which then stops them
in order) and ask the kernel to signal them if the devstack itself dies
(``PR_SET_PDEATHSIG``), so even a SIGKILLed ``make up`` leaves no process behind. Output
goes to one log file per process; :class:`LogFollower` prints it prefixed for humans.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

__all__ = [
    "LogFollower",
    "ManagedProcess",
    "ProcessDiedError",
    "ProcessSpec",
    "die_with_parent",
    "pid_alive",
    "read_tail",
]

_PR_SET_PDEATHSIG = 1


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def read_tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of a log file ("" when it does not exist yet)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def die_with_parent(sig: int) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when its parent dies."""

    def preexec() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


class ProcessDiedError(RuntimeError):
    """A child exited while it was expected to run; the message holds its log tail."""


@dataclass
class ProcessSpec:
    """How to run one child."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    #: GET this URL until it answers 200 to call the process ready (None: see ready_check).
    ready_url: str | None = None
    #: Or call this until it returns True.
    ready_check: Callable[[], bool] | None = None
    ready_timeout: float = 60.0
    stop_signal: int = signal.SIGTERM
    #: Sent by the kernel if the devstack dies first.
    death_signal: int = signal.SIGTERM
    stop_timeout: float = 15.0
    user: str | None = None


class ManagedProcess:
    """A running child with its log file."""

    def __init__(self, spec: ProcessSpec, log_dir: Path) -> None:
        self.spec = spec
        self.log_path = log_dir / f"{spec.name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.expected_exit = False

    @property
    def name(self) -> str:
        """The process's name in logs (``api``, ``realtime-1``...)."""
        return self.spec.name

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return self.popen.pid if self.popen is not None else None

    def start(self) -> None:
        """Spawn the child; returns at once (see :meth:`wait_ready`)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.spec.env}
        with self.log_path.open("ab") as log:
            log.write(
                f"--- start {time.strftime('%H:%M:%S')} {' '.join(self.spec.argv)}\n".encode()
            )
            log.flush()
            self.popen = subprocess.Popen(  # noqa: S603 - argv built by us
                list(self.spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.spec.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent(self.spec.death_signal),  # noqa: PLW1509
                user=self.spec.user,
            )
        self.expected_exit = False

    def running(self) -> bool:
        """True while the child has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        """The exit status once exited (negative: killed by that signal)."""
        return None if self.popen is None else self.popen.poll()

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log."""
        return read_tail(self.log_path, lines)

    def _is_ready(self, client: httpx.Client) -> bool:
        if self.spec.ready_check is not None:
            return self.spec.ready_check()
        if self.spec.ready_url is None:
            return True
        try:
            return client.get(self.spec.ready_url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the child answers its readiness probe; raise if it dies or times out."""
        deadline = time.monotonic() + (timeout or self.spec.ready_timeout)
        with httpx.Client(trust_env=False) as client:
            while True:
                if not self.running():
                    code = self.returncode()
                    msg = f"{self.name} exited with {code} while starting:\n{self.tail()}"
                    raise ProcessDiedError(msg)
                if self._is_ready(client):
                    return
                if time.monotonic() > deadline:
                    msg = f"{self.name} not ready after {timeout or self.spec.ready_timeout}s:\n"
                    raise TimeoutError(msg + self.tail())
                time.sleep(0.05)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's whole process group (e.g. nginx and its workers)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop gracefully, then by force; returns the exit status."""
        if self.popen is None:
            return None
        self.expected_exit = True
        if self.popen.poll() is None:
            self.signal(self.spec.stop_signal)
            try:
                self.popen.wait(timeout or self.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        # Reap anything left in the group (workers whose master died first).
        self.signal(signal.SIGKILL)
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the child and wait for it (a crash, for fault tests)."""
        if self.popen is None:
            return
        self.expected_exit = True
        self.signal(signal.SIGKILL)
        self.popen.wait(10)


class LogFollower:
    """Prints the logs of several processes to a terminal, each line prefixed by its name."""

    COLORS = (36, 32, 35, 33, 34, 96, 92, 95, 93, 94)

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._files: dict[str, tuple[Path, int]] = {}
        self._width = 10

    def follow(self, name: str, path: Path) -> None:
        """Start printing ``path`` from its current end."""
        offset = path.stat().st_size if path.exists() else 0
        self._files[name] = (path, offset)
        self._width = max(self._width, len(name))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="log-follower", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        color = {n: self.COLORS[i % len(self.COLORS)] for i, n in enumerate(self._files)}
        tty = self.out.isatty()
        while not self._stop.wait(0.1):
            for name, (path, offset) in list(self._files.items()):
                try:
                    with path.open("rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read()
                except FileNotFoundError:
                    continue
                if not chunk:
                    continue
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:
                    continue
                self._files[name] = (path, offset + cut)
                prefix = f"{name:<{self._width}} | "
                if tty:
                    code = color.setdefault(name, self.COLORS[len(color) % len(self.COLORS)])
                    prefix = f"\x1b[{code}m{prefix}\x1b[0m"
                for line in chunk[:cut].decode(errors="replace").splitlines():
                    self.out.write(prefix + line + "\n")
                self.out.flush()

    def close(self) -> None:
        """Stop printing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
