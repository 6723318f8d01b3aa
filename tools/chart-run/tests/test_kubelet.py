"""The kubelet's behaviour, on a small chart: readiness gates traffic, liveness restarts,
preStop runs before SIGTERM, and the grace period ends with SIGKILL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chorus_chartrun.runner import ChartRun
from chorus_devstack.process import pid_alive

CHART = Path(__file__).parent / "charts" / "echo"


@pytest.fixture(scope="module")
def echo(runs_dir: Path) -> Iterator[ChartRun]:
    run = ChartRun.launch(runs_dir / "echo", chart=CHART, grace=None).wait()
    try:
        yield run
    finally:
        run.stop()


def _answers(run: ChartRun, count: int = 12) -> set[str]:
    with httpx.Client(base_url=run.urls["ingress_http"], trust_env=False, timeout=10) as client:
        return {client.get("/").text for _ in range(count)}


def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass  # a connection cut while the pod restarts and endpoints change: not yet
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.2)


def _pod(run: ChartRun, name: str) -> dict[str, Any]:
    return next(p for p in run.status()["pods"] if p["name"] == name)


def test_a_pod_that_stops_being_ready_stops_getting_traffic(echo: ChartRun) -> None:
    pods = echo.pods("echo-")
    assert len(pods) == 2
    _until(lambda: all(_pod(echo, p)["ready"] for p in pods))
    _until(lambda: _answers(echo) == set(pods))  # round-robin over both endpoints
    echo.pod_get(pods[0], 8080, "/unready")
    _until(lambda: not _pod(echo, pods[0])["ready"])
    _until(lambda: _answers(echo) == {pods[1]})


def test_a_failing_liveness_probe_restarts_the_container(echo: ChartRun) -> None:
    pod = echo.pods("echo-")[1]
    echo.pod_get(pod, 8080, "/sick")

    def restarted() -> bool:
        [container] = _pod(echo, pod)["containers"]
        return bool(container["restarts"] >= 1 and container["ready"])

    _until(restarted, timeout=40)
    [container] = _pod(echo, pod)["containers"]
    assert "(LivenessProbeFailed)" in container["last_exit"]
    events = [e["message"] for e in _pod(echo, pod)["events"]]
    assert any("failed liveness probe, will be restarted" in e for e in events), events
    _until(lambda: pod in _answers(echo))  # ready again, so back behind the ingress


def test_deletion_runs_pre_stop_then_sigterm_then_sigkill_at_the_grace_period(
    runs_dir: Path,
) -> None:
    state = runs_dir / "deletion"
    replicas = ["--set-json", '{"replicas": 1}']
    run = ChartRun.launch(state, chart=CHART, grace=None, extra=replicas).wait()
    [pod] = run.pods("echo-")
    stopped = time.time()
    assert run.stop() == 0
    shared = next((state / "run" / "pods" / pod / "volumes").glob("shared"))
    pre_stop = float((shared / f"{pod}.prestop").read_text().split()[0])
    term = float((shared / f"{pod}.term").read_text().split()[0])
    last_alive = float((shared / f"{pod}.alive").read_text().split()[-1])
    assert stopped <= pre_stop < term  # the hook first (it sleeps 1 s), then SIGTERM
    assert term - pre_stop >= 1.0
    # SIGTERM was ignored: SIGKILL came when the 3 s grace period, counted from the start of
    # the deletion (the hook included), ended.
    assert last_alive > term
    assert 2.0 <= last_alive - stopped <= 4.5


def test_a_killed_chart_run_leaves_no_process_behind(runs_dir: Path) -> None:
    replicas = ["--set-json", '{"replicas": 1}']
    run = ChartRun.launch(runs_dir / "killed", chart=CHART, extra=replicas).wait()
    pods = run.status()["pods"]
    pids = [p["sandbox_pid"] for p in pods] + [c["pid"] for p in pods for c in p["containers"]]
    assert all(pids)
    run.process.kill()  # no chance to clean up: the kernel must
    run.process.wait()
    _until(lambda: not any(pid_alive(pid) for pid in pids), timeout=15)
