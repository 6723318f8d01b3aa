"""Managed processes: readiness, death reports, and no orphans even after SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from chorus_devstack.ports import free_port
from chorus_devstack.process import ManagedProcess, ProcessDiedError, ProcessSpec, pid_alive


def test_ready_when_the_probe_answers(tmp_path: Path) -> None:
    port = free_port()
    spec = ProcessSpec(
        name="web",
        argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ready_url=f"http://127.0.0.1:{port}/",
    )
    process = ManagedProcess(spec, tmp_path)
    process.start()
    process.wait_ready(timeout=20)
    assert process.running()
    assert process.stop() is not None
    assert not process.running()


def test_a_child_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    spec = ProcessSpec(
        name="crashy",
        argv=[sys.executable, "-c", "import sys; print('cannot start'); sys.exit(3)"],
        ready_url="http://127.0.0.1:1/",
    )
    process = ManagedProcess(spec, tmp_path)
    process.start()
    with pytest.raises(ProcessDiedError, match="cannot start"):
        process.wait_ready(timeout=20)
    assert process.returncode() == 3


def test_children_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    # A parent (standing in for `make up`) starts a long-lived child, reports its pid, and
    # is then SIGKILLed: it gets no chance to clean up, yet the child must not survive.
    program = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from chorus_devstack.process import ManagedProcess, ProcessSpec
        child = ManagedProcess(
            ProcessSpec(name="sleeper", argv=[sys.executable, "-c", "import time; time.sleep(99)"]),
            Path({str(tmp_path)!r}),
        )
        child.start()
        print(child.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    assert pid_alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while pid_alive(child_pid):
        assert time.monotonic() < deadline, "child outlived its killed parent"
        time.sleep(0.05)


def test_pid_alive_counts_a_zombie_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    assert pid_alive(child.pid)
    child.kill()
    deadline = time.monotonic() + 10
    while pid_alive(child.pid):  # exited, not reaped yet: a zombie
        assert time.monotonic() < deadline, "a killed, unreaped child still counts as alive"
        time.sleep(0.01)
    assert Path(f"/proc/{child.pid}").exists()
    child.wait(10)
    assert not pid_alive(child.pid)
