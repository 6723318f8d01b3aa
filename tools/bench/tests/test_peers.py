"""Peer installs: made once, reused, redone when interrupted or changed, failures named."""

from __future__ import annotations

import stat
import textwrap
from pathlib import Path

import pytest

from chorus_bench.peers import MARKER, PeerInstallError, node_prefix, python_venv, uv_command


def fake_tool(bin_dir: Path, name: str, body: str) -> Path:
    """An executable ``name`` in ``bin_dir`` that logs its argv, then runs ``body`` (sh)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    log = bin_dir / f"{name}.log"
    path.write_text(f'#!/bin/sh\nPATH=/usr/bin:/bin\necho "$@" >> {log}\n{textwrap.dedent(body)}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return log


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH with a fake ``uv`` that makes the venv's interpreter, and nothing else on it."""
    bin_dir = tmp_path / "bin"
    fake_tool(
        bin_dir,
        "uv",
        """
        if [ "$1" = venv ]; then
            for last in "$@"; do :; done
            mkdir -p "$last/bin" && touch "$last/bin/python"
        fi
        [ -n "$UV_FAIL" ] && exit 3
        exit 0
        """,
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("UV_FAIL", raising=False)
    return bin_dir


def calls(bin_dir: Path, name: str) -> list[str]:
    log = bin_dir / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_venv_is_made_once_and_reused(tmp_path: Path, tools: Path) -> None:
    python = python_venv(tmp_path, "peer", ["a>=1", "b"])
    assert python == tmp_path / "bench" / ".venvs" / "peer" / "bin" / "python"
    assert (python.parent.parent / MARKER).read_text() == "a>=1\nb\n"
    made = calls(tools, "uv")
    assert [c.split()[:2] for c in made] == [["venv", "-q"], ["pip", "install"]]
    assert made[1].endswith("a>=1 b")
    assert python_venv(tmp_path, "peer", ["a>=1", "b"]) == python
    assert calls(tools, "uv") == made  # reused: uv not run again


def test_an_interrupted_or_changed_install_is_redone(tmp_path: Path, tools: Path) -> None:
    python = python_venv(tmp_path, "peer", ["a"])
    (python.parent.parent / MARKER).unlink()  # as if the install had been interrupted
    python_venv(tmp_path, "peer", ["a"])
    python_venv(tmp_path, "peer", ["a", "c"])  # a package more
    installs = [c for c in calls(tools, "uv") if c.startswith("pip install")]
    assert [c.rsplit(" ", 2)[-2:] for c in installs][-1] == ["a", "c"]
    assert len(installs) == 3


def test_a_failed_install_says_which_command_and_leaves_no_marker(
    tmp_path: Path, tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_FAIL", "1")
    with pytest.raises(PeerInstallError, match="exited with 3"):
        python_venv(tmp_path, "peer", ["a"])
    assert not (tmp_path / "bench" / ".venvs" / "peer" / MARKER).exists()


def test_uv_comes_from_path_else_from_the_make_variable(
    tmp_path: Path, tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert uv_command() == [str(tools / "uv")]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("UV", "/opt/python3 -m uv")
    assert uv_command() == ["/opt/python3", "-m", "uv"]


def test_npm_packages_go_into_their_own_prefix(tmp_path: Path, tools: Path) -> None:
    fake_tool(tools, "node", "exit 0")
    fake_tool(tools, "npm", 'mkdir -p "$3/node_modules"')
    prefix = node_prefix(tmp_path, "gateway", ["@scope/pkg@1.2.3"])
    assert prefix == tmp_path / "bench" / ".venvs" / "gateway"
    [install] = calls(tools, "npm")
    assert install.startswith(f"install --prefix {prefix} ")
    assert install.endswith("@scope/pkg@1.2.3")
    node_prefix(tmp_path, "gateway", ["@scope/pkg@1.2.3"])
    assert len(calls(tools, "npm")) == 1


def test_without_node_the_reason_is_named(
    tmp_path: Path, tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PeerInstallError, match="node and npm are needed"):
        node_prefix(tmp_path, "gateway", ["pkg"])
