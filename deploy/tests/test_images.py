"""The Dockerfile and compose.yaml, checked without a Docker engine.

The Dockerfile is parsed and its build stage replayed for each service: the files they COPY are copied
into a scratch context and their `uv sync` commands run, so the venv an image would get is
built here and the service's entry point imported from it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml
from deploycheck.chart import REPO

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
#: SERVICE build argument (the directory under services/ and the image name) -> module.
MODULES = {
    "api": "chorus_api",
    "realtime": "chorus_realtime",
    "llm-gateway": "chorus_gateway",
    "worker": "chorus_worker",
}


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_one_dockerfile_builds_every_service() -> None:
    assert not list(REPO.glob("services/*/Dockerfile")), "one recipe: deploy/docker/Dockerfile"
    assert {p.parent.name for p in REPO.glob("services/*/pyproject.toml")} == set(MODULES)
    for service in MODULES:
        project = tomllib.loads((REPO / "services" / service / "pyproject.toml").read_text())
        # The image runs `chorus-service`, a link to this console script.
        assert f"chorus-{service}" in project["project"]["scripts"], service


def test_dockerfile_follows_the_rules() -> None:
    steps = _instructions(DOCKERFILE)
    froms = [arg for op, arg in steps if op == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    for image in froms:
        assert re.match(r"python:3\.11\.\d+-slim-bookworm AS \w+$", image), image
    assert not [op for op, _ in steps if op == "HEALTHCHECK"]
    (cmd,) = [arg for op, arg in steps if op == "CMD"]
    assert json.loads(cmd) == ["chorus-service"]
    users = [arg for op, arg in steps if op == "USER"]
    assert users and re.fullmatch(r"\d+:\d+", users[-1]) and not users[-1].startswith("0")
    syncs = [arg for op, arg in steps if op == "RUN" and "uv sync" in arg]
    assert len(syncs) == 2 and all(
        '--project "services/${SERVICE}"' in s and "--frozen" in s and "--no-dev" in s
        for s in syncs
    )
    assert re.search(r"COPY --from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ ", DOCKERFILE.read_text())
    members = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["uv"]["workspace"][
        "members"
    ]
    copied = " ".join(arg for op, arg in steps if op == "COPY")
    for member in members:
        assert f"{member}/pyproject.toml" in copied, f"uv needs every workspace member: {member}"


def test_dockerignore_keeps_the_workspace_manifests() -> None:
    ignore = (REPO / ".dockerignore").read_text()
    assert ".venv" in ignore and ".git" in ignore
    assert "!tests/e2e/pyproject.toml" in ignore


def _replay_build(service: str, context: Path, venv: Path) -> None:
    """COPY from the repository and RUN the build stage's commands, as docker build would."""
    env = {
        **os.environ,
        "SERVICE": service,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": shutil.which("python3") or "python3",
        "UV_LINK_MODE": "copy",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_QUIET": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    stage = ""
    for op, arg in _instructions(DOCKERFILE):
        if op == "FROM":
            stage = arg.rsplit(" ", 1)[-1]
        elif stage == "build" and op == "COPY" and not arg.startswith("--from"):
            *sources, _ = shlex.split(arg)
            for source in sources:
                target = context / source
                if (REPO / source).is_dir():
                    shutil.copytree(
                        REPO / source,
                        target,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "tests", ".venv*"),
                    )
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(REPO / source, target)
        elif stage == "build" and op == "RUN":
            command = re.sub(r"^(--mount=\S+\s+)+", "", arg)
            subprocess.run(["sh", "-ec", command], cwd=context, env=env, check=True)


@pytest.mark.parametrize("service", sorted(MODULES))
def test_image_venv_builds_and_runs_the_service(service: str, tmp_path: Path) -> None:
    context, venv = tmp_path / "src", tmp_path / "venv"
    context.mkdir()
    _replay_build(service, context, venv)
    module = MODULES[service]
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", f"import {module}.main, {module}.__main__"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # CMD ["chorus-service"]: the service's console script, run by the venv's python.
    entry = venv / "bin" / "chorus-service"
    assert entry.resolve().name == f"chorus-{service}"
    script = entry.read_text()
    assert script.startswith(f"#!{venv}/bin/python") and f"from {module}" in script
    # Installed as wheels (--no-editable): the image needs no source tree.
    assert not list(venv.glob("lib/python*/site-packages/*.pth")) or all(
        "/src/" not in p.read_text() for p in venv.glob("lib/python*/site-packages/*.pth")
    )


def test_compose_file_matches_the_compose_spec() -> None:
    import check_jsonschema  # noqa: PLC0415

    schema_file = (
        resources.files(check_jsonschema) / "builtin_schemas" / "vendor" / "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    jsonschema.validate(compose, schema)
    assert {
        "postgres",
        "redis",
        "migrate",
        "api",
        "realtime-1",
        "realtime-2",
        "llm-gateway",
        "worker",
        "nginx",
    } <= set(compose["services"])
    for name in ("api", "worker"):
        assert (
            compose["services"][name]["depends_on"]["migrate"]["condition"]
            == "service_completed_successfully"
        )


def test_compose_nginx_config_is_generated_from_the_route_table() -> None:
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "deploy/compose/render_nginx.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    conf = (REPO / "deploy" / "compose" / "nginx.conf").read_text()
    routes = yaml.safe_load((REPO / "deploy/helm/chorus/files/routes.yaml").read_text())["routes"]
    for route in routes:
        if route.get("exact"):
            assert f"location = {route['prefix']} {{" in conf
        else:
            assert f"location {route['prefix']}/ {{" in conf
    assert "server realtime-1:8000" in conf and "server realtime-2:8000" in conf
