"""The whole system comes up, answers on every port, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import httpx

from chorus_devstack.nginx import nginx_binary
from chorus_devstack.process import pid_alive
from chorus_devstack.stack import Ports, Stack, StackOptions


def test_every_process_becomes_ready_and_stops_cleanly(tmp_path: Path) -> None:
    # nginx is part of the system under test (make test-unit installs it): asked for, not
    # used only when present.
    assert nginx_binary() is not None, "nginx is not installed: run `make test-unit`"
    stack = Stack(StackOptions(state_dir=tmp_path, ports=Ports.free(), nginx=True))
    with stack:
        pids = [p.pid for p in stack.processes.values() if p.pid is not None]
        with httpx.Client(trust_env=False, timeout=10) as client:
            names = ["api", *stack.replicas("realtime"), *stack.replicas("llm-gateway"), "worker"]
            for name in names:
                response = client.get(f"{stack.url(name)}/readyz")
                assert response.status_code == 200, (name, response.text)
                assert response.headers["x-request-id"]
            spec = client.get(f"{stack.url('ingress')}/api/openapi.json")
            assert spec.status_code == 200
            assert spec.json()["info"]["title"] == "Chorus API"
            assert client.get(f"{stack.url('mock-openai')}/readyz").status_code == 200
            assert client.get(f"{stack.url('smtp-sink')}/messages").json()["items"] == []
        assert not list(stack.died())
    leftovers = [pid for pid in pids if pid_alive(pid)]
    assert leftovers == []
