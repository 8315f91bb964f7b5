"""The local node's volumes (agentry_localcluster.storage): which claims get one, which volumes are
removed, and that removing one deletes only a directory of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from agentry_localcluster.storage import (
    ANNOTATION_PROVISIONED_BY,
    PROVISIONER,
    STORAGE_CLASS,
    Provisioner,
    released,
    storage_class,
    volume_for,
    wants_volume,
)

pytestmark = pytest.mark.unit


def claim(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "ws", "namespace": "ns", "uid": "u-1"},
        "spec": {"storageClassName": STORAGE_CLASS, "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": "Pending"},
    }
    for key, value in changes.items():
        part, field = key.split("__")
        body[part][field] = value
    return body


def test_the_class_is_the_default_and_deletes_its_volumes() -> None:
    sc = storage_class()
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert (sc["provisioner"], sc["reclaimPolicy"]) == (PROVISIONER, "Delete")


def test_only_waiting_claims_of_the_class_get_a_volume() -> None:
    assert wants_volume(claim())
    assert not wants_volume(claim(spec__storageClassName="standard"))
    assert not wants_volume(claim(spec__volumeName="pvc-u-1"))
    assert not wants_volume(claim(status__phase="Bound"))
    assert not wants_volume(claim(metadata__deletionTimestamp="2026-01-01T00:00:00Z"))


def test_the_volume_is_the_claims_on_the_node(tmp_path: Path) -> None:
    pv = volume_for(claim(), tmp_path / "pvc-u-1")
    assert pv["metadata"]["name"] == "pvc-u-1"
    assert pv["spec"]["claimRef"]["uid"] == "u-1" and pv["spec"]["capacity"] == {"storage": "1Gi"}
    assert pv["spec"]["local"] == {"path": str(tmp_path / "pvc-u-1")}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete"
    assert released({**pv, "status": {"phase": "Released"}})
    assert not released({**pv, "status": {"phase": "Bound"}})
    foreign = {"metadata": {"name": "x", "annotations": {ANNOTATION_PROVISIONED_BY: "other"}}}
    assert not released({**foreign, "status": {"phase": "Released"}})


class Deletes:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, path: str) -> httpx.Response:
        self.deleted.append(path)
        return httpx.Response(200, request=httpx.Request("DELETE", "http://x" + path))


def test_removing_a_volume_deletes_only_a_directory_of_its_own(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "volumes", tmp_path / "precious"
    (root / "pvc-a").mkdir(parents=True)
    elsewhere.mkdir()
    provisioner, http = Provisioner(httpx.Client, root), Deletes()
    for name, path in (("pvc-a", root / "pvc-a"), ("pvc-b", elsewhere)):
        volume = {"metadata": {"name": name}, "spec": {"local": {"path": str(path)}}}
        provisioner.remove(http, volume)  # type: ignore[arg-type]
    assert not (root / "pvc-a").exists() and elsewhere.is_dir()
    assert http.deleted == ["/api/v1/persistentvolumes/pvc-a", "/api/v1/persistentvolumes/pvc-b"]
