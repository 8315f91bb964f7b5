"""Pure builders of an Agent's kept workspace (spec.workspace.persistent): its PersistentVolumeClaim
and the volume a run's pod mounts at /workspace. No API calls (the handler: handlers/workspace.py)."""

from __future__ import annotations

from agentry_common import constants as c
from agentry_common.models import AgentSpec
from agentry_common.workspace import claim_labels, claim_name

from ..settings import Settings
from .kinds import Meta


def kept_claim(agent: Meta, spec: AgentSpec) -> str | None:
    """The claim a run of the Agent (its metadata) mounts at /workspace; None: an emptyDir (not
    persistent, or an Agent not stored in the cluster, such as a sample Job's, which has no uid to own
    a claim)."""
    uid = agent.get("uid")
    if not spec.workspace.persistent or not uid:
        return None
    return claim_name(str(agent.get("name", "")), str(uid))


def build_claim(meta: Meta, spec: AgentSpec, config: Settings) -> dict[str, object]:
    """The Agent's claim: owned by the Agent (garbage-collected with it), ReadWriteOnce, of
    spec.workspace.size, in spec.workspace.storageClassName, else the installation's class
    (AGENTRY_WORKSPACE_STORAGE_CLASS), else the cluster's default (no storageClassName)."""
    name = kept_claim(meta, spec)
    if name is None:
        raise ValueError("spec.workspace.persistent is off, or the Agent has no uid")
    claim_spec: dict[str, object] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": spec.workspace.size}},
    }
    storage_class = spec.workspace.storage_class_name or config.workspace_storage_class
    if storage_class:
        claim_spec["storageClassName"] = storage_class
    owner = {
        "apiVersion": c.API_VERSION,
        "kind": c.AGENT_KIND,
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace", ""),
            "labels": claim_labels(meta.get("name", "")),
            "ownerReferences": [owner],
        },
        "spec": claim_spec,
    }


def workspace_volume(claim: str | None, size_limit: str) -> dict[str, object]:
    """The pod's `workspace` volume: the Agent's claim, else an emptyDir of the installation's size."""
    if claim:
        return {"name": "workspace", "persistentVolumeClaim": {"claimName": claim}}
    return {"name": "workspace", "emptyDir": {"sizeLimit": size_limit}}
