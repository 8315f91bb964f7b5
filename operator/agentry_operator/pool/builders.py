"""Pure builders of the warm pool: a pool's warm Job (a run's Job as builders/job.py makes it, minus
everything of a run), a run's profile, why a run needs a Job of its own, and the claim's patches and
payload. No API calls; unit-tested without a cluster."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from agentry_common import constants as c
from agentry_common import pool as p
from agentry_common.pool import PoolProfile

from ..builders.job import ANNOTATION_AGENT, ANNOTATION_INPUT, build_job
from ..settings import Settings

Doc = Mapping[str, object]
Json = dict[str, object]

WARM_DEADLINE_SECONDS = 86400  # a warm Job nobody claims ends after a day; its pool replaces it
CONFIG_VOLUME = "config"
KEY_VOLUME = "claim-key"
CONFIG_SIZE = "2Mi"  # the claim's input files: the Agent snapshot and the task text


def node(doc: object, *path: str) -> Json:
    """The object at `path` (KeyError naming the path when it is missing or no object)."""
    value = doc
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    if not isinstance(value, dict):
        raise KeyError(".".join(path))
    return value


def items(doc: object, *path: str) -> list[Json]:
    """The objects of the list at `path` (none when missing)."""
    value = doc
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def strings(doc: object, *path: str) -> dict[str, str]:
    value = doc
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def container(job: Doc) -> Json:
    return items(job, "spec", "template", "spec", "containers")[0]


@dataclass(frozen=True)
class Profile:
    """What a warm pod is made for: a run's image, resources and runtime class, as its Job has them."""

    image: str
    resources: str  # canonical JSON
    runtime_class: str

    def describe(self) -> str:
        runtime = f", runtimeClassName {self.runtime_class}" if self.runtime_class else ""
        return f"image {self.image}, resources {self.resources}{runtime}"


def profile_of(job: Doc) -> Profile:
    pod, box = node(job, "spec", "template", "spec"), container(job)
    return Profile(
        image=str(box.get("image") or ""),
        resources=json.dumps(box.get("resources") or {}, sort_keys=True, separators=(",", ":")),
        runtime_class=str(pod.get("runtimeClassName") or ""),
    )


def pool_labels(pool: str) -> dict[str, str]:
    return {c.LABEL_MANAGED_BY: c.MANAGED_BY, p.LABEL_POOL: pool}


def warm_job(profile: PoolProfile, namespace: str, config: Settings, name: str) -> Json:
    """The warm Job of `profile` in `namespace`: a run's Job for an Agent of the profile's resources
    (same security context, volumes, limits and failure policy), running the runtime in warm mode with
    no run data: its inputs come at claim into an emptyDir, its key from its own Secret."""
    agent_spec: Json = {"instructions": "warm", "model": {"provider": "anthropic", "name": "warm"}}
    if profile.resources is not None:
        agent_spec["resources"] = profile.resources.model_dump()
    agent: Json = {"metadata": {"name": f"pool-{profile.name}", "namespace": namespace}, "spec": agent_spec}
    execution: Json = {
        "metadata": {"name": f"pool-{profile.name}", "namespace": namespace, "uid": "warm"},
        "spec": {"agentRef": {"name": f"pool-{profile.name}"}},
    }
    bare = config.model_copy(update={"gateway_url": None, "otlp_endpoint": None, "egress_proxy_url": None})
    if profile.image:
        bare = bare.model_copy(update={"workspace_image": profile.image})
    job: Json = build_job(execution, agent, "", bare, name=name)
    labels = pool_labels(profile.name)
    job["metadata"] = {"name": name, "namespace": namespace, "labels": labels}
    spec = node(job, "spec")
    spec["backoffLimit"] = 0  # one pod: a warm pod that fails is replaced by the pool, not the Job
    spec["activeDeadlineSeconds"] = WARM_DEADLINE_SECONDS
    template = node(spec, "template")
    template["metadata"] = {"labels": dict(labels)}
    pod = node(template, "spec")
    if profile.runtime_class_name:
        pod["runtimeClassName"] = profile.runtime_class_name
    pod["volumes"] = [
        {"name": CONFIG_VOLUME, "emptyDir": {"sizeLimit": CONFIG_SIZE}}
        if v.get("name") == CONFIG_VOLUME
        else v
        for v in items(pod, "volumes")
    ] + [{"name": KEY_VOLUME, "secret": {"secretName": p.claim_secret_name(name), "defaultMode": 0o440}}]
    box = container(job)
    command = box.get("command")
    box["command"] = [*(command if isinstance(command, list) else []), p.WARM_FLAG]
    port = config.pool_claim_port
    box["env"] = [{"name": "HOME", "value": c.WORKSPACE_DIR}, {"name": p.ENV_CLAIM_PORT, "value": str(port)}]
    box["ports"] = [{"name": "claim", "containerPort": port, "protocol": "TCP"}]
    mounts = [
        {**m, "readOnly": False} if m.get("name") == CONFIG_VOLUME else m for m in items(box, "volumeMounts")
    ]
    box["volumeMounts"] = [*mounts, {"name": KEY_VOLUME, "mountPath": p.KEY_DIR, "readOnly": True}]
    return job


def claim_secret(job: Doc, key: str) -> Json:
    """The warm pod's claim key, owned by its Job (collected with it), mounted in that pod only."""
    meta = node(job, "metadata")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": {
            "name": p.claim_secret_name(str(meta["name"])),
            "namespace": meta["namespace"],
            "labels": strings(meta, "labels"),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "stringData": {p.KEY_FILE: key},
    }


def needs_job(run_job: Doc, token_secret: str | None) -> str | None:
    """Why this run cannot be served by a warm pod (None: it can): what its Job has that a warm pod
    cannot be given at claim."""
    if int(str(node(run_job, "spec").get("backoffLimit") or 0)):
        return "spec.retries: a warm pod's Job never starts a second pod"
    pod = node(run_job, "spec", "template", "spec")
    for volume in items(pod, "volumes"):
        if "persistentVolumeClaim" in volume:
            return "a kept workspace (spec.workspace.persistent) is mounted when its pod is made"
        if volume.get("name") == CONFIG_VOLUME and len(items(volume, "projected", "sources")) > 1:
            return "a resumed run's state is mounted when its pod is made"
    for var in items(container(run_job), "env"):
        source = var.get("valueFrom")
        if source is None:
            continue
        ref = node(source, "secretKeyRef") if isinstance(source, dict) and "secretKeyRef" in source else None
        if ref is None or ref.get("name") != token_secret:
            return (
                "spec.secrets from Kubernetes Secrets are resolved by the kubelet when the pod is made; "
                "the operator never reads them"
            )
    return None


def claim_env(run_job: Doc, token_data: Mapping[str, str]) -> dict[str, str]:
    """The run's environment as its Job would give it, the token Secret's references resolved."""
    env: dict[str, str] = {}
    for var in items(container(run_job), "env"):
        name = str(var["name"])
        if "value" in var:
            env[name] = str(var["value"])
            continue
        key = str(node(var, "valueFrom", "secretKeyRef").get("key"))
        if key in token_data:
            env[name] = token_data[key]
    return env


def claim_files(run_job: Doc) -> dict[str, str]:
    annotations = strings(run_job, "spec", "template", "metadata", "annotations")
    return {
        c.AGENT_FILE: annotations.get(ANNOTATION_AGENT, ""),
        c.INPUT_FILE: annotations.get(ANNOTATION_INPUT, ""),
    }


def secret_values(secret: Doc) -> dict[str, str]:
    """A Secret's data, decoded."""
    return {k: base64.b64decode(v).decode() for k, v in strings(secret, "data").items()}


def take_patch(run_job: Doc, warm: Doc, now: dt.datetime) -> Json:
    """The warm Job made the run's: its labels, annotations and owner (the Execution), its deadline
    the run's counted from the Job's start; with a resourceVersion precondition, so that two claims
    cannot both take it."""
    meta, spec = node(run_job, "metadata"), node(run_job, "spec")
    started = str(node(warm, "status").get("startTime") or node(warm, "metadata").get("creationTimestamp"))
    since = dt.datetime.fromisoformat(started.replace("Z", "+00:00"))
    elapsed = max(0, math.ceil((now - since).total_seconds()))
    return {
        "metadata": {
            "resourceVersion": node(warm, "metadata")["resourceVersion"],
            "labels": strings(meta, "labels"),
            "annotations": strings(meta, "annotations"),
            "ownerReferences": meta["ownerReferences"],
        },
        "spec": {"activeDeadlineSeconds": elapsed + int(str(spec["activeDeadlineSeconds"]))},
    }


def pod_patch(run_job: Doc) -> Json:
    """The warm pod made the run's: the labels the runs' NetworkPolicy and watches select, and the
    annotations the operator and the egress proxy read (the Agent snapshot: its allowedHosts)."""
    return {
        "metadata": {
            "labels": strings(run_job, "spec", "template", "metadata", "labels"),
            "annotations": strings(run_job, "spec", "template", "metadata", "annotations"),
        }
    }


def claimed_by(job: Doc) -> str:
    """The Execution a pool's Job was claimed for ("" while warm)."""
    return strings(job, "metadata", "annotations").get(c.ANNOTATION_EXECUTION, "")


def claim_request(execution: Doc, run_job: Doc, token_data: Mapping[str, str]) -> p.ClaimRequest:
    meta = node(execution, "metadata")
    return p.ClaimRequest(
        claim=str(meta["uid"]),
        execution=str(meta["name"]),
        env=claim_env(run_job, token_data),
        files=claim_files(run_job),
    )
