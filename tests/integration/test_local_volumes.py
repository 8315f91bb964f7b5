"""The local node's volumes (agentry_localcluster.storage) against a real control plane: a claim of
the local class gets a volume bound to it (by the real PV controller), and a deleted claim's volume
is removed, its directory with it. The node itself (mounting it into pods) is the e2e tier's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import PersistentVolume, PersistentVolumeClaim
from lightkube.resources.storage_v1 import StorageClass

from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.storage import STORAGE_CLASS, Provisioner, storage_class, volume_name
from tests.fixtures.helpers import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def local_class(kube_client: Client) -> Iterator[None]:
    """The local class, not made the default here: the shared control plane's other tests' claims
    (none so far) keep no class."""
    body = storage_class()
    body["metadata"].pop("annotations")
    kube_client.create(StorageClass.from_dict(body))
    yield
    kube_client.delete(StorageClass, STORAGE_CLASS)


def claim(name: str, ns: str, storage_class_name: str = STORAGE_CLASS) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "16Mi"}},
            "storageClassName": storage_class_name,
        },
    }


def test_a_claim_gets_a_volume_and_loses_it_with_its_directory(
    kube: ControlPlane, kube_client: Client, namespace: str, local_class: None, tmp_path: Path
) -> None:
    made = kube_client.create(PersistentVolumeClaim.from_dict(claim("ws", namespace)))
    kube_client.create(PersistentVolumeClaim.from_dict(claim("elsewhere", namespace, "other-class")))
    assert made.metadata is not None and made.metadata.uid is not None
    pv_name = volume_name({"metadata": {"uid": made.metadata.uid}})
    provisioner = Provisioner(kube.http, tmp_path / "volumes")
    provisioner.root.mkdir()
    with kube.http() as http:
        provisioner.step(http)
        provisioner.step(http)  # again before it is bound: the same volume, no second one
    path = tmp_path / "volumes" / pv_name
    assert path.is_dir() and path.stat().st_mode & 0o777 == 0o700
    bound = eventually(
        lambda: (
            (c := kube_client.get(PersistentVolumeClaim, "ws", namespace=namespace)).status
            and c.status.phase == "Bound"
            and c
        ),
        what="the claim bound",
    )
    assert bound.spec is not None and bound.spec.volumeName == pv_name
    volume = kube_client.get(PersistentVolume, pv_name)
    assert volume.spec is not None and volume.spec.local is not None
    assert volume.spec.local.path == str(path)
    assert volume.spec.persistentVolumeReclaimPolicy == "Delete"
    assert volume.spec.capacity == {"storage": "16Mi"}
    other = kube_client.get(PersistentVolumeClaim, "elsewhere", namespace=namespace)
    assert other.spec is not None and not other.spec.volumeName  # another class: not ours to serve

    kube_client.delete(PersistentVolumeClaim, "ws", namespace=namespace)
    eventually(
        lambda: (kube_client.get(PersistentVolume, pv_name).status or {}).phase == "Released",  # type: ignore[union-attr]
        what="the volume released",
    )
    with kube.http() as http:
        provisioner.step(http)
    assert not path.exists()
    eventually(
        lambda: pv_name not in {v.metadata.name for v in kube_client.list(PersistentVolume) if v.metadata},
        what="the volume deleted (its pv-protection finalizer removed)",
    )
