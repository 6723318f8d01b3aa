"""Prometheus scraping every process of the devstack, as it would in a cluster.

The e2e suite uses it to check what an operator sees: every service ``up``, the
dashboard's queries returning data, and the alert rules loaded and quiet.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from chorus_devstack.process import ProcessSpec

__all__ = ["prometheus_binary", "prometheus_spec", "render_prometheus_config"]


def prometheus_binary() -> str | None:
    """Debian's ``prometheus`` on PATH, or None."""
    return shutil.which("prometheus")


def render_prometheus_config(
    *,
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path] = (),
    scrape_interval: str = "2s",
) -> str:
    """A config scraping ``/metrics`` of each job's ``host:port`` targets.

    Callers name jobs as the chart's ServiceMonitor does (``chorus-api``…), so the same
    alert rules and dashboard queries work in both places.
    """
    config = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(addresses)}],
            }
            for job, addresses in targets.items()
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_spec(directory: Path, config: str, *, port: int) -> ProcessSpec:
    """Write ``config`` and describe how to run Prometheus on it."""
    binary = prometheus_binary()
    if binary is None:
        msg = "prometheus is not installed"
        raise FileNotFoundError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "prometheus.yml"
    path.write_text(config)
    return ProcessSpec(
        name="prometheus",
        argv=[
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
            # Exemplars (trace ids on histogram buckets), scraped as OpenMetrics.
            "--enable-feature=exemplar-storage",
            "--log.level=warn",
        ],
        ready_url=f"http://127.0.0.1:{port}/-/ready",
    )
