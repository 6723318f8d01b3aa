"""A container's process: its own root, the chart's paths, its user, nothing of the host changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chorus_chartrun.container import START_FAILED, Launch, Mount
from chorus_chartrun.images import Image, Images
from chorus_devstack.routes import repo_root


@pytest.fixture
def sandbox() -> Iterator[int]:
    """A pod sandbox: a process holding new network, UTS and IPC namespaces."""
    assert os.geteuid() == 0, "container tests need root (mount and network namespaces)"
    process = subprocess.Popen(["unshare", "--net", "--uts", "--ipc", "sleep", "infinity"])
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def kubelet_dir() -> Iterator[Path]:
    """A directory the root mirrors (unlike /tmp) holding another pod's secret."""
    directory = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="chart-run-kubelet-"))
    directory.chmod(0o755)  # readable by anyone: only hiding keeps the container out
    (directory / "other-pods-token").write_text("s3cret")
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def _run(launch: Launch, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "launch.json"
    launch.dump(path)
    return subprocess.run(
        [sys.executable, "-m", "chorus_chartrun.container", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def checkout_in_tmp() -> Iterator[Path]:
    """What an image build reads of the repository, checked out under /tmp (as CI clones)."""
    repo = repo_root()
    directory = Path(tempfile.mkdtemp(prefix="chart-run-checkout-"))
    assert directory.parts[1] == "tmp"
    skip = shutil.ignore_patterns(".venv", "__pycache__", "*.pyc", "*_cache", "tests")
    for name in ("pyproject.toml", "uv.lock", "deploy/docker/Dockerfile"):
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / name, directory / name)
    for tree in ("libs", "services"):
        shutil.copytree(repo / tree, directory / tree, ignore=skip)
    for manifest in repo.glob("*/*/pyproject.toml"):  # the other workspace members
        target = directory / manifest.relative_to(repo)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(manifest, target)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def _image_launch(image: Image, argv: list[str], sandbox: int, tmp_path: Path) -> Launch:
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o777, exist_ok=True)
    scratch.chmod(0o777)
    return Launch(
        sandbox_pid=sandbox,
        hostname="pod-0",
        argv=argv,
        env=image.env,
        cwd=image.workdir,
        rootfs=str(tmp_path / "root"),
        uid=10001,
        gid=10001,
        image_mounts=image.mounts,
        expose=image.expose,
        mounts=[Mount("/tmp", str(scratch))],  # an emptyDir at /tmp, as the chart mounts one
        read_only_root=True,
        no_new_privs=True,
    )


def test_a_service_image_built_from_a_checkout_under_tmp_runs_in_its_pod(
    sandbox: int, tmp_path: Path, checkout_in_tmp: Path
) -> None:
    image = Images(checkout_in_tmp, checkout_in_tmp / ".chart-run").pull(
        "ghcr.io/chorus/chorus-api:test"
    )
    # Nothing the pod is told names the checkout: /tmp is empty (or an emptyDir) in a pod.
    told = [*image.expose, *image.env.values(), *image.entrypoint, *image.cmd, image.workdir]
    assert not [value for value in told if str(checkout_in_tmp) in value]
    probe = "import chorus_schema, sys; print(chorus_schema.__file__); print(sys.prefix)"
    script = f'python -c "{probe}" && chorus-service --help'
    result = _run(_image_launch(image, ["/bin/sh", "-c", script], sandbox, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    module, prefix, usage = result.stdout.split("\n")[:3]
    assert module.startswith("/app/.venv/lib/python3.11/site-packages/chorus_schema/")
    assert prefix == "/app/.venv"
    assert usage.startswith("usage: python -m chorus_api")


def test_the_postgres_image_runs_nothing_of_the_checkouts_venv(
    sandbox: int, tmp_path: Path
) -> None:
    image = Images(repo_root(), tmp_path / "cache").pull("postgres:18")
    entrypoint = next(m for m in image.mounts if m.target.endswith("docker-entrypoint.sh"))
    told = [*image.expose, image.env["PATH"], Path(entrypoint.source).read_text().split("\n")[0]]
    assert not [value for value in told if sys.prefix in value]
    # The chart's probe program: it needs the wheel's libpq, found relative to itself.
    argv = ["docker-entrypoint.sh", "pg_isready", "--version"]
    result = _run(_image_launch(image, argv, sandbox, tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"pg_isready (PostgreSQL) {image.env['PG_MAJOR']}.")


def test_the_container_sees_the_chart_paths_read_only_root_and_its_user(
    sandbox: int, tmp_path: Path, kubelet_dir: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "providers.yaml").write_text("[]")
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o777)
    scratch.chmod(0o777)
    hosts = tmp_path / "hosts"
    hosts.write_text("10.96.0.10\tchorus-postgres\n")
    script = (
        "id -u; id -G; hostname; pwd; cat /etc/chorus/llm-providers/providers.yaml; echo;"
        "grep chorus-postgres /etc/hosts;"
        "touch /etc/chorus/x 2>/dev/null && echo root-writable || echo root-read-only;"
        "touch /tmp/ok && echo tmp-writable;"
        "touch /etc/chorus/llm-providers/x 2>/dev/null && echo volume-writable"
        " || echo volume-read-only;"
        "ls /run | wc -l;"
        f"ls {kubelet_dir} | wc -l"
    )
    launch = Launch(
        sandbox_pid=sandbox,
        hostname="api-0",
        argv=["/bin/sh", "-c", script],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/etc/chorus",
        rootfs=str(tmp_path / "root"),
        uid=10001,
        gid=10001,
        groups=[10002],
        mounts=[
            Mount("/etc/chorus/llm-providers", str(volume), read_only=True),
            Mount("/tmp", str(scratch)),
            Mount("/etc/hosts", str(hosts)),
        ],
        read_only_root=True,
        no_new_privs=True,
        hidden=[str(kubelet_dir)],
    )
    result = _run(launch, tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[:4] == ["10001", "10001 10002", "api-0", "/etc/chorus"]
    assert "[]" in lines
    assert "10.96.0.10\tchorus-postgres" in lines
    assert {"root-read-only", "tmp-writable", "volume-read-only"} <= set(lines)
    assert lines[-3] == "0"  # /run starts empty, as in an image
    assert lines[-2] == "0"  # the kubelet's own directory is hidden
    # Nothing of the machine was touched: no /etc/chorus here, the file went to the volume.
    assert not Path("/etc/chorus").exists()
    assert (scratch / "ok").exists()


def test_a_missing_working_directory_or_command_is_a_start_error(
    sandbox: int, tmp_path: Path
) -> None:
    base = {
        "sandbox_pid": sandbox,
        "hostname": "p",
        "env": {"PATH": "/usr/bin"},
        "rootfs": str(tmp_path / "root"),
    }
    missing_cwd = _run(Launch(argv=["true"], cwd="/nonexistent", **base), tmp_path)  # type: ignore[arg-type]
    assert missing_cwd.returncode == START_FAILED
    assert "chdir to cwd" in missing_cwd.stderr
    missing_command = _run(Launch(argv=["no-such-program"], **base), tmp_path)  # type: ignore[arg-type]
    assert missing_command.returncode == START_FAILED
    assert 'exec: "no-such-program"' in missing_command.stderr
