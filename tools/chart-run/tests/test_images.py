"""Images: the Dockerfile's own configuration, and nothing the chart does not name."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from chorus_chartrun.images import PYTHON_SLIM_ENV, ImageError, Images, dockerfile_config
from chorus_devstack.routes import repo_root

REPO = repo_root()


def test_the_service_image_is_configured_as_the_dockerfile_says() -> None:
    config = dockerfile_config(REPO / "deploy" / "docker" / "Dockerfile", PYTHON_SLIM_ENV)
    assert config.env["PATH"].startswith("/app/.venv/bin:/usr/local/bin")
    assert config.env["PORT"] == "8000"
    assert (config.workdir, config.user, config.cmd) == ("/app", "10001:10001", ["chorus-service"])
    assert config.stop_signal == signal.SIGTERM


def test_a_dockerfile_is_read_stage_by_stage(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM base AS build\nENV BUILD_ONLY=1\nFROM base\n# a comment\n"
        'ENV A=1 \\\n    B="two words"\nENV C $A-x\nWORKDIR /srv\nWORKDIR app\nUSER 7:8\n'
        'ENTRYPOINT ["tini", "--"]\nCMD serve --fast\nSTOPSIGNAL SIGINT\n'
    )
    config = dockerfile_config(dockerfile, {"PATH": "/bin"})
    assert "BUILD_ONLY" not in config.env
    assert (config.env["A"], config.env["B"], config.env["C"]) == ("1", "two words", "1-x")
    assert (config.workdir, config.user) == ("/srv/app", "7:8")
    assert config.entrypoint == ["tini", "--"]
    assert config.cmd == ["/bin/sh", "-c", "serve --fast"]
    assert config.stop_signal == signal.SIGINT


def test_an_image_the_chart_does_not_name_is_not_pulled(tmp_path: Path) -> None:
    images = Images(REPO, tmp_path)
    with pytest.raises(ImageError, match=r'failed to pull image "docker\.io/library/busybox:1'):
        images.pull("docker.io/library/busybox:1.36")
    with pytest.raises(ImageError):
        images.pull("ghcr.io/chorus/chorus-nonexistent:1.0")
