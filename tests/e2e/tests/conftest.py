"""The end-to-end suite's system: every process of Chorus, started once per run.

The stack runs as in a cluster — two realtime and two gateway replicas behind nginx — and
tests reach it only through the ingress. When a test fails, the tail of every process's
log is attached to its report.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chorus_devstack.nginx import nginx_binary
from chorus_devstack.stack import Ports, Stack, StackOptions


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The running system (nginx is required: the suite drives only the ingress)."""
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: run `make e2e`, which installs it")
    system = Stack(
        StackOptions(
            state_dir=Path(tmp_path_factory.mktemp("stack")),
            ports=Ports.free(),
            realtime_replicas=2,
            gateway_replicas=2,
        )
    )
    system.start()
    yield system
    system.stop()


@pytest.fixture(scope="session")
def ingress(stack: Stack) -> str:
    """The public base URL."""
    return stack.url("ingress")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Attach service logs to a failing test's report."""
    report = yield
    if report.failed and "stack" in getattr(item, "funcargs", {}):
        system: Stack = item.funcargs["stack"]
        report.sections.append(("service logs", system.logs(lines=80)))
    return report
