"""Kept workspaces on the local node: a default StorageClass and a small provisioner for it.

The node has no storage of its own, and the in-tree hostPath provisioner makes directories only root
can write (a hostPath volume never gets the pod's fsGroup). So claims of the `agentry-local` class
(the cluster's default) get a `local` PersistentVolume here: a directory under the cluster's workdir,
pinned to the node, that the kubelet gives to the pod's fsGroup like any disk. A released volume (its
claim deleted, e.g. with its Agent) is removed, directory and all: reclaim policy Delete. Capacity is
not enforced by such a directory; Agentry's runtime holds a kept workspace's size itself.

The provisioner is a thread of the process that runs the cluster (`make dev`, the e2e session),
polling the API server; the directories live with the cluster's etcd data, under its workdir.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .layout import NODE_NAME

log = logging.getLogger("agentry.localcluster.storage")

STORAGE_CLASS = "agentry-local"
PROVISIONER = "agentry.dev/local-path"
ANNOTATION_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
POLL_SECONDS = 1.0


def storage_class() -> dict[str, Any]:
    """The cluster's default StorageClass: claims without a class get it."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        # The scheduler binds a pod's claims itself and waits for them in its bind step: with Immediate,
        # a pod tried before its claim was bound could wait minutes for the scheduler's next look.
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def volume_name(claim: dict[str, Any]) -> str:
    return f"pvc-{claim['metadata']['uid']}"


def wants_volume(claim: dict[str, Any]) -> bool:
    """A claim of our class, not bound yet and not being deleted."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    return (
        spec.get("storageClassName") == STORAGE_CLASS
        and not spec.get("volumeName")
        and not meta.get("deletionTimestamp")
        and (claim.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def volume_for(claim: dict[str, Any], path: Path) -> dict[str, Any]:
    """The claim's PersistentVolume: the directory `path` on the node, bound to the claim."""
    meta, spec = claim["metadata"], claim["spec"]
    node_term = {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {ANNOTATION_PROVISIONED_BY: PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": "Filesystem",
            "local": {"path": str(path)},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [node_term]}]}},
        },
    }


def released(volume: dict[str, Any]) -> bool:
    """One of ours whose claim is gone: to delete (Released, or Failed as the PV controller may say)."""
    ours = (volume["metadata"].get("annotations") or {}).get(ANNOTATION_PROVISIONED_BY) == PROVISIONER
    return ours and (volume.get("status") or {}).get("phase") in ("Released", "Failed")


class Provisioner:
    """Provisions and deletes the node's local volumes until stopped."""

    def __init__(self, client: Callable[[], httpx.Client], root: Path) -> None:
        self.client = client
        self.root = root
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Provisioner:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="local-volumes", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        with self.client() as http:
            while not self._stop.is_set():
                try:
                    self.step(http)
                except (httpx.HTTPError, OSError, KeyError) as exc:  # the API server away: next poll
                    log.warning("local volumes: %s", exc)
                self._stop.wait(POLL_SECONDS)

    def step(self, http: httpx.Client) -> None:
        """One pass: a volume for every waiting claim of our class, and released volumes removed."""
        claims = http.get("/api/v1/persistentvolumeclaims").raise_for_status().json()["items"]
        for claim in filter(wants_volume, claims):
            path = self.root / volume_name(claim)
            path.mkdir(mode=0o700, exist_ok=True)  # the kubelet gives it to the pod's fsGroup
            answer = http.post("/api/v1/persistentvolumes", json=volume_for(claim, path))
            if answer.status_code != 409:  # 409: made by the previous pass, not bound yet
                answer.raise_for_status()
        volumes = http.get("/api/v1/persistentvolumes").raise_for_status().json()["items"]
        for volume in filter(released, volumes):
            self.remove(http, volume)

    def remove(self, http: httpx.Client, volume: dict[str, Any]) -> None:
        path = Path(((volume.get("spec") or {}).get("local") or {}).get("path", ""))
        if path.parent == self.root:  # only our own directories, whatever a volume says
            shutil.rmtree(path, ignore_errors=True)
        answer = http.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")
        if answer.status_code != 404:
            answer.raise_for_status()
