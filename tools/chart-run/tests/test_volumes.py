"""Volumes as the kubelet lays them out: ConfigMap and Secret files, emptyDir, subPath."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from typing import Any

import pytest

from chorus_chartrun.objects import Store
from chorus_chartrun.volumes import PodVolumes, VolumeError


def _pod(volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "chorus"},
        "spec": {"securityContext": {"fsGroup": 10001}, "volumes": volumes, "containers": []},
    }


def _store() -> Store:
    store = Store()
    store.apply(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "scripts", "namespace": "chorus"},
            "data": {"a.py": "print(1)", "b.py": "print(2)"},
        }
    )
    data = {
        "llm-providers.yaml": base64.b64encode(b"[]").decode(),
        "TOKEN": base64.b64encode(b"t").decode(),
    }
    store.apply(
        {"kind": "Secret", "metadata": {"name": "secrets", "namespace": "chorus"}, "data": data}
    )
    return store


def test_files_items_modes_and_the_fs_group(tmp_path: Path) -> None:
    pod = _pod(
        [
            {"name": "scripts", "configMap": {"name": "scripts", "defaultMode": 0o500}},
            {
                "name": "providers",
                "secret": {
                    "secretName": "secrets",
                    "items": [
                        {"key": "llm-providers.yaml", "path": "conf/providers.yaml", "mode": 0o400}
                    ],
                },
            },
            {"name": "tmp", "emptyDir": {}},
        ]
    )
    volumes = PodVolumes(pod, store=_store(), directory=tmp_path / "v", claims=tmp_path / "c")
    volumes.set_up()
    scripts = volumes.paths["scripts"]
    assert sorted(p.name for p in scripts.iterdir()) == ["a.py", "b.py"]
    assert stat.S_IMODE((scripts / "a.py").stat().st_mode) == 0o540  # defaultMode + group read
    provided = volumes.paths["providers"]
    assert [p.name for p in provided.rglob("*") if p.is_file()] == ["providers.yaml"]
    assert (provided / "conf" / "providers.yaml").read_text() == "[]"
    assert (provided / "conf" / "providers.yaml").stat().st_gid == 10001
    scratch = volumes.paths["tmp"]
    assert scratch.stat().st_gid == 10001
    assert scratch.stat().st_mode & stat.S_ISGID


def test_mounts_keep_the_chart_paths_and_resolve_sub_paths(tmp_path: Path) -> None:
    pod = _pod(
        [{"name": "scripts", "configMap": {"name": "scripts"}}, {"name": "data", "emptyDir": {}}]
    )
    volumes = PodVolumes(pod, store=_store(), directory=tmp_path / "v", claims=tmp_path / "c")
    volumes.set_up()
    container = {
        "volumeMounts": [
            {"name": "scripts", "mountPath": "/etc/chorus/scripts", "readOnly": True},
            {"name": "scripts", "mountPath": "/usr/local/bin/a.py", "subPath": "a.py"},
            {"name": "data", "mountPath": "/var/lib/db", "subPathExpr": "$(POD)"},
        ]
    }
    mounts = volumes.mounts(container, {"POD": "p-0"})
    assert [(m.target, m.read_only) for m in mounts] == [
        ("/etc/chorus/scripts", True),
        ("/usr/local/bin/a.py", False),
        ("/var/lib/db", False),
    ]
    assert mounts[1].source.endswith("scripts/a.py")
    assert Path(mounts[2].source).is_dir()  # a missing subPath directory is created
    assert Path(mounts[2].source).name == "p-0"


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        (
            {"name": "x", "secret": {"secretName": "missing"}},
            'MountVolume.SetUp failed for volume "x" : secret "missing" not found',
        ),
        (
            {
                "name": "x",
                "secret": {"secretName": "secrets", "items": [{"key": "NOPE", "path": "n"}]},
            },
            "references non-existent secret key: NOPE",
        ),
        (
            {
                "name": "x",
                "configMap": {"name": "scripts", "items": [{"key": "a.py", "path": "../escape"}]},
            },
            "must be relative",
        ),
        ({"name": "x", "hostPath": {"path": "/etc"}}, "is not supported"),
    ],
)
def test_a_volume_that_cannot_be_set_up_is_a_mount_failure(
    tmp_path: Path, volume: dict[str, Any], message: str
) -> None:
    volumes = PodVolumes(
        _pod([volume]), store=_store(), directory=tmp_path / "v", claims=tmp_path / "c"
    )
    with pytest.raises(VolumeError, match=message):
        volumes.set_up()


def test_optional_sources_may_be_missing(tmp_path: Path) -> None:
    pod = _pod([{"name": "x", "secret": {"secretName": "missing", "optional": True}}])
    volumes = PodVolumes(pod, store=_store(), directory=tmp_path / "v", claims=tmp_path / "c")
    volumes.set_up()
    assert list(volumes.paths["x"].iterdir()) == []


def test_a_mount_of_an_unknown_volume_is_refused(tmp_path: Path) -> None:
    volumes = PodVolumes(_pod([]), store=_store(), directory=tmp_path / "v", claims=tmp_path / "c")
    volumes.set_up()
    with pytest.raises(VolumeError, match='volumeMount "nope"'):
        volumes.mounts({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}, {})
