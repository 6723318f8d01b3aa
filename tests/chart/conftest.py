"""The Helm chart, installed and run by chart-run, one values file at a time.

Each scenario of ``deploy/helm/chorus/ci/`` (the defaults, production, Gateway API) is
installed once per module that asks for ``release`` (``helm install --wait`` and ``helm
test`` must pass), driven through its ingress by real clients, then deleted. Clients reach
the release as its users do: at the public host name the values give (over TLS, the
certificate checked against the run's CA), or at any host when the values give none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from chorus_chartrun.runner import ChartRun, ChartRunError
from chorus_e2e.endpoint import Endpoint

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "chorus"
SCENARIOS = {
    p.name.removesuffix("-values.yaml"): p for p in sorted((CHART / "ci").glob("*-values.yaml"))
}
#: Seconds an install may take: three run side by side on a loaded 2-core machine.
INSTALL_TIMEOUT = 300.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """chart-run needs root (network and mount namespaces): say so, never skip."""
    if os.geteuid() != 0:
        for item in items:
            item.add_marker(pytest.mark.usefixtures("_root_required"))


@pytest.fixture(scope="session")
def _root_required() -> None:
    pytest.fail("chart-run needs root: pods get network and mount namespaces of their own")


@pytest.fixture(scope="session")
def runs_dir() -> Iterator[Path]:
    """Where this session's chart-runs keep their state, removed at the end.

    Not under pytest's basetemp: another pytest run on the machine prunes old basetemps,
    which would pull the data directories from under a running release.
    """
    directory = Path(tempfile.mkdtemp(prefix="chart-run-tests-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def launched(runs_dir: Path) -> Iterator[dict[str, ChartRun]]:
    """Every scenario's install, started side by side (each one mostly waits: on Postgres,
    probe periods, back-offs); each module's ``release`` waits for its own."""
    runs = {
        name: ChartRun.launch(
            runs_dir / name,
            values=[path],
            timeout=INSTALL_TIMEOUT,
        )
        for name, path in SCENARIOS.items()
    }
    yield runs
    for run in runs.values():
        run.stop()


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def release(request: pytest.FixtureRequest, launched: dict[str, ChartRun]) -> Iterator[ChartRun]:
    """The chart installed with one ``ci/`` values file (and the site's values)."""
    run = launched[request.param]
    try:
        run.wait(INSTALL_TIMEOUT + 60)
    except ChartRunError as exc:
        pytest.fail(f"{request.param} values: {exc}", pytrace=False)
    try:
        yield run
    finally:
        code = run.stop()
        assert code == 0, (run.output.read_text()[-3000:], code)


@pytest.fixture(scope="module")
def endpoint(release: ChartRun) -> Endpoint:
    """Where users reach the release: its host name when the values give one."""
    urls = release.urls
    if urls["hosts"]:
        port = int(urls["ingress_https"].rsplit(":", 1)[1])
        return Endpoint(f"https://{urls['hosts'][0]}", ("127.0.0.1", port), Path(urls["ca"]))
    return Endpoint(urls["ingress_http"])


@pytest.fixture
async def http(endpoint: Endpoint) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the public API, through the ingress."""
    async with endpoint.client(timeout=15.0) as client:
        yield client


@pytest.fixture
async def mail(release: ChartRun) -> AsyncIterator[httpx.AsyncClient]:
    """The SMTP relay's inbox (the site's sink)."""
    async with httpx.AsyncClient(
        base_url=release.urls["mail"], trust_env=False, timeout=15
    ) as client:
        yield client
