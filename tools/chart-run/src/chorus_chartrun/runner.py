"""A chart-run started from another program (the chart's tests): start, wait, ask, stop.

:meth:`ChartRun.launch` runs ``python -m chorus_chartrun`` as a child (killed with the caller
if the caller dies); :meth:`ChartRun.wait` waits for its status file: the URLs once the
release is installed and ``helm test`` passed, or the failure report, which
:class:`ChartRunError` carries. Several installs can proceed side by side.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from chorus_devstack.process import die_with_parent

__all__ = ["ChartRun", "ChartRunError"]


class ChartRunError(RuntimeError):
    """The release did not install (or pass ``helm test``); the message is chart-run's report."""


@dataclass
class ChartRun:
    """A running chart-run and what it reported."""

    process: subprocess.Popen[bytes]
    state_dir: Path
    output: Path
    info: dict[str, Any]

    @classmethod
    def launch(
        cls,
        state_dir: Path,
        *,
        values: Sequence[Path] = (),
        chart: Path | None = None,
        timeout: float = 240.0,
        grace: float | None = 1.0,
        extra: Sequence[str] = (),
    ) -> ChartRun:
        """Start installing and return at once (:meth:`wait` for the outcome).

        ``timeout``: seconds the release may take to get ready; ``grace``: the grace period
        of every pod at the end (None: each pod's own).
        """
        state_dir.mkdir(parents=True, exist_ok=True)
        output = state_dir / "chart-run.log"
        argv = [sys.executable, "-m", "chorus_chartrun", "--state-dir", str(state_dir / "run")]
        argv += ["--status-file", str(state_dir / "status.json"), "--timeout", str(timeout)]
        for path in values:
            argv += ["--values", str(path)]
        if chart is not None:
            argv += ["--chart", str(chart)]
        if grace is not None:
            argv += ["--grace", str(grace)]
        with output.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own CLI
                [*argv, *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(signal.SIGTERM),  # noqa: PLW1509
            )
        return cls(process, state_dir, output, {})

    def wait(self, timeout: float = 300.0) -> ChartRun:
        """Wait until the release is ready (self) or has failed (ChartRunError, stopped)."""
        status = self.state_dir / "status.json"
        deadline = time.monotonic() + timeout
        while not status.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                msg = f"chart-run exited with {self.process.returncode}:\n"
                raise ChartRunError(msg + self.output.read_text()[-4000:])
            time.sleep(0.2)
        self.info = json.loads(status.read_text())
        if self.info["phase"] != "Ready":
            self.stop()
            raise ChartRunError(self.info.get("failure", json.dumps(self.info)))
        return self

    @property
    def urls(self) -> dict[str, Any]:
        """What the banner prints, as data (``ingress_http``, ``hosts``, ``ca``, ``mail``...)."""
        urls: dict[str, Any] = self.info["urls"]
        return urls

    def status(self) -> dict[str, Any]:
        """The cluster's status now (workloads, pods, notes)."""
        answer = httpx.get(f"{self.urls['api']}/status", timeout=10, trust_env=False)
        answer.raise_for_status()
        status: dict[str, Any] = answer.json()
        return status

    def pods(self, prefix: str) -> list[str]:
        """Names of the running pods whose name starts with ``prefix``."""
        return sorted(
            p["name"]
            for p in self.status()["pods"]
            if p["name"].startswith(prefix) and not p["terminating"] and p["phase"] == "Running"
        )

    def pod_get(self, pod: str, port: int, path: str) -> httpx.Response:
        """GET ``path`` from the pod's own address (``/metrics`` of one replica, say)."""
        url = f"{self.urls['api']}/pods/{pod}/proxy/{port}/{path.lstrip('/')}"
        return httpx.get(url, timeout=10, trust_env=False)

    def logs(self, pod: str, container: str, lines: int = 200) -> str:
        """A container's log."""
        url = f"{self.urls['api']}/pods/{pod}/logs"
        params: dict[str, str | int] = {"container": container, "lines": lines}
        return httpx.get(url, params=params, timeout=10, trust_env=False).text

    def stop(self, timeout: float = 90.0) -> int:
        """Ctrl-C: delete the release and wait for chart-run to exit; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return int(self.process.returncode)
