"""The end-to-end suite's system: every process of Chorus, started once per run.

The stack runs as in a cluster — two realtime and two gateway replicas behind nginx,
Prometheus scraping everything with the chart's alert rules, and every service exporting
its spans (all of them) to an OTLP receiver — and tests reach the services
only through the ingress. Test-only tools (the SMTP sink's inbox, the mock upstream's
control API, Prometheus, a read-only look at Postgres for what no API shows) stand where an
operator would look. When a test fails, the tail of every process's log is attached to its
report.

Tests run in a fixed order (``ORDER``): the happy-path journeys, then the check that no alert
fired during them, then the faults (each restores what it broke), then the operator's check
that every dashboard query has data over the whole run. Each test also runs alone
(``pytest tests/e2e -k name``): the operator's checks produce the everyday traffic they
read (``everyday_traffic``) instead of relying on the journeys before them.

Prometheus evaluates the chart's alert rules as the chart renders them, with one value
changed: every alert's ``for:`` is ``ALERT_FOR`` (``metrics.prometheusRule.forOverrides``),
so a condition that holds for longer than that fires during the run.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from chorus_devstack.nginx import nginx_binary
from chorus_devstack.prometheus import prometheus_binary
from chorus_devstack.stack import Ports, Stack, StackOptions
from chorus_e2e.prometheus import ALERT_FOR, Prometheus, chart_rules
from chorus_e2e.system import REALTIME_ENV, SHARED_ENV, WORKER_ENV
from chorus_e2e.traffic import everyday_use, scraped

#: Modules in the order they run; tests within a module keep their file order.
ORDER = (
    "test_smoke",
    "test_signup",
    "test_chat",
    "test_private_rooms",
    "test_assistant",
    "test_llm",
    "test_tracing",
    "test_orders",
    "test_shared_settings",
    "test_alerts",
    "test_faults_realtime",
    "test_faults_worker",
    "test_faults_storage",
    "test_faults_llm",
    "test_hostile",
    "test_revocation",
    "test_dashboard",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Journeys first, faults after the no-alert check, the dashboard check last."""

    def rank(item: pytest.Item) -> int:
        module = item.path.stem
        return ORDER.index(module) if module in ORDER else len(ORDER)

    items.sort(key=rank)  # stable: file order within a module


def llm_providers(mock_url: str) -> str:
    """Two providers on the mock upstream — ``primary`` and a fallback ``backup`` — with
    short timeouts so a hanging upstream is given up on in seconds."""
    timeouts = {"connect": 2, "ttft": 2, "idle": 2, "total": 30}
    provider = {
        "base_url": f"{mock_url}/v1",
        "api_key": "mock-key",
        "models": ["mock-gpt", "mock-gpt-mini"],
        "timeouts": timeouts,
    }
    return json.dumps(
        {
            "providers": [
                {"name": "primary", "priority": 0, **provider},
                {"name": "backup", "priority": 1, **provider},
            ],
            "aliases": {"assistant": "mock-gpt"},
        }
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The running system (nginx and Prometheus are required: `make e2e` installs them).

    Its state lives in a directory of its own, not under pytest's shared basetemp: another
    pytest run on the machine prunes old basetemps, which would pull the data directories
    from under Postgres and Redis.
    """
    if nginx_binary() is None or prometheus_binary() is None:
        pytest.fail("nginx and prometheus must be installed: run `make e2e`, which installs them")
    state_dir = Path(tempfile.mkdtemp(prefix="chorus-e2e-"))
    ports = Ports.free()
    system = Stack(
        StackOptions(
            state_dir=state_dir,
            ports=ports,
            realtime_replicas=2,
            gateway_replicas=2,
            nginx=True,
            prometheus=True,
            rule_files=(chart_rules(state_dir / "rules", alert_for=ALERT_FOR),),
            tracing=True,
            shared_env=SHARED_ENV,
            extra_env={
                "realtime": REALTIME_ENV,
                "worker": WORKER_ENV,
                "llm-gateway": {
                    "LLM_PROVIDERS": llm_providers(f"http://127.0.0.1:{ports.mock_openai}"),
                    # The LLM fault tests fail the upstream on purpose a dozen times; a
                    # circuit opened by them would fail later journeys (the breaker is
                    # the gateway's own tests' business).
                    "GATEWAY_BREAKER_FAILURES": "50",
                },
            },
        )
    )
    try:
        system.start()
        yield system
    finally:
        system.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def everyday_traffic(stack: Stack) -> None:
    """Everyday use of the system, twice, seen by Prometheus growing (once a run)."""
    async with httpx.AsyncClient(trust_env=False, timeout=15.0) as client:
        prometheus = Prometheus(client, stack.url("prometheus"))
        await everyday_use(stack.url("ingress"))
        await scraped(prometheus, rising=False)
        await everyday_use(stack.url("ingress"))
        await scraped(prometheus, rising=True)


@pytest.fixture(scope="session")
def ingress(stack: Stack) -> str:
    """The public base URL."""
    return stack.url("ingress")


@pytest.fixture
async def http(ingress: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the public API (through the ingress)."""
    async with httpx.AsyncClient(base_url=ingress, trust_env=False, timeout=15.0) as client:
        yield client


@pytest.fixture
async def ops(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for test-side tools (SMTP inbox, mock upstream, Prometheus)."""
    async with httpx.AsyncClient(trust_env=False, timeout=15.0) as client:
        yield client


@pytest.fixture
async def redis(stack: Stack) -> AsyncIterator[Redis]:
    """The system's Redis, for what no public API shows (streams, the job queue)."""
    client = Redis.from_url(stack.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def db(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    """A read-only look at Postgres, for what no public API shows (analytics, usage)."""
    url = stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(autouse=True)
async def _mock_upstream_clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """No queued mock fault outlives the test that set it."""
    yield
    if "stack" in request.fixturenames:
        stack: Stack = request.getfixturevalue("stack")
        async with httpx.AsyncClient(trust_env=False) as client:
            await client.post(
                f"{stack.url('mock-openai')}/_mock/config", json={"clear_faults": True}
            )
