"""One container's process: started through :mod:`chorus_chartrun.container`, stopped for sure.

The process is the runtime helper, which becomes the container; it runs in a session of its
own and is SIGKILLed by the kernel if the runner dies (``PR_SET_PDEATHSIG``, set again after
the helper changes user), so nothing outlives the runner. Stopping sends the image's stop
signal to the container's process, waits out the grace period and then kills everything
left in its session, as the end of a container's PID namespace would. Output goes to one
log file per container, appended across restarts (``kubectl logs --previous``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from chorus_chartrun.container import START_FAILED, Launch
from chorus_devstack.process import die_with_parent, read_tail

__all__ = ["ContainerProcess", "exec_in"]

#: Sent by the kernel to every container process if the runner dies.
DEATH_SIGNAL = signal.SIGKILL


async def _spawn(launch: Launch, path: Path, **options: object) -> asyncio.subprocess.Process:
    launch.dump(path)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chorus_chartrun.container",
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(DEATH_SIGNAL),
        **options,  # type: ignore[arg-type]
    )


async def exec_in(launch: Launch, path: Path, within: float) -> tuple[int, str]:
    """Run ``launch`` (a ``join_pid`` launch) to completion: (exit status, output).

    A command still running after ``within`` seconds is killed and reported as status -1.
    """
    process = await _spawn(
        launch, path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return -1, f"command timed out after {within:g}s"
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


class ContainerProcess:
    """The running process of one container, and its log."""

    def __init__(self, name: str, log_path: Path, launch_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.launch_path = launch_path
        self.process: asyncio.subprocess.Process | None = None
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        """The container's main process while it runs."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid

    async def start(self, launch: Launch) -> None:
        """Start the container; returns once the process exists."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} {' '.join(launch.argv)}\n".encode())
            log.flush()
            self.process = await _spawn(launch, self.launch_path, stdout=log, stderr=log)
        self.started_at = time.monotonic()

    async def wait(self) -> int:
        """The exit status once the container's process exits."""
        assert self.process is not None
        return await self.process.wait()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the container's main process."""
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, sig)

    def reap_session(self) -> None:
        """SIGKILL whatever is left of the container (its whole session)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)

    async def stop(self, stop_signal: int, grace: float) -> int | None:
        """Send ``stop_signal``, wait up to ``grace`` seconds, then SIGKILL; the exit status."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.signal(stop_signal)
            try:
                await asyncio.wait_for(asyncio.shield(self.process.wait()), max(grace, 0.0))
            except TimeoutError:
                self.signal(signal.SIGKILL)
                await self.process.wait()
        self.reap_session()
        return self.process.returncode

    def start_failed(self) -> bool:
        """True when the process ended because the container could not start at all."""
        return self.process is not None and self.process.returncode == START_FAILED

    def tail(self, lines: int = 40) -> str:
        """The last lines of the log (every run of the container)."""
        return read_tail(self.log_path, lines)

    def last_run(self, lines: int = 40) -> str:
        """The last lines the latest run of the container wrote."""
        text = self.tail(100_000)
        cut = text.rfind("--- start ")
        run = text[cut:] if cut >= 0 else text
        return "\n".join(run.splitlines()[-lines:])
