"""Pure builder of the CronJob that carries an Agent's schedule (backend: CronJob).

The CronJob's pod does one thing: create an Execution with trigger Schedule. Every run, scheduled or
not, is then the same object with the same lifecycle; concurrencyPolicy is enforced on Executions.
"""

from __future__ import annotations

from typing import Any

from agentry_common import constants as c
from agentry_common.models import ScheduleSpec
from agentry_common.naming import cronjob_name

from ..firetimes import jitter_seconds
from ..settings import Settings
from ..tick import ENV_TICK_DELAY, ENV_TICK_OWNER
from .job import RUNTIME_UID, owner_reference

TICK_DEADLINE_SECONDS = 300


def _tick_pod(agent_name: str, config: Settings, delay: int, owner: str) -> dict[str, object]:
    """The pod of each scheduled tick: creates one Execution (agentry_operator.tick), labelled with
    the Agent's owner (the run gate starts an owned Agent's runs only when they carry it)."""
    return {
        "restartPolicy": "OnFailure",
        "serviceAccountName": config.tick_service_account,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "tick",
                "image": config.tick_image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["python", "-m", "agentry_operator.tick"],
                "env": [
                    {"name": c.ENV_AGENT, "value": agent_name},
                    {"name": ENV_TICK_DELAY, "value": str(delay)},  # spec.schedule.jitterSeconds
                    {"name": ENV_TICK_OWNER, "value": owner},
                    {
                        "name": c.ENV_NAMESPACE,
                        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                    },
                    # The CronJob controller names its Jobs <cronjob>-<scheduled minute since epoch>.
                    {
                        "name": "AGENTRY_TICK_JOB",
                        "valueFrom": {
                            "fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}
                        },
                    },
                ],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "64Mi"},
                    "limits": {"memory": "128Mi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True,
                    "runAsNonRoot": True,
                },
            }
        ],
    }


def build_cronjob(agent: dict[str, Any], config: Settings) -> dict[str, Any]:
    meta = agent["metadata"]
    schedule = ScheduleSpec.model_validate(agent["spec"]["schedule"])
    labels = {
        c.LABEL_AGENT: meta["name"][:63],
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_COMPONENT: "schedule",
    }
    delay = jitter_seconds(f"{meta['namespace']}/{meta['name']}", schedule.jitter_seconds)
    owner = str((meta.get("labels") or {}).get(c.LABEL_OWNER) or "")
    pod = _tick_pod(meta["name"], config, delay, owner)
    spec: dict[str, object] = {
        "schedule": agent["spec"]["schedule"]["cron"],
        "timeZone": schedule.time_zone,
        "suspend": schedule.suspend,
        # The tick pod finishes in seconds; overlap is decided per Execution, not here.
        "concurrencyPolicy": "Allow",
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {
            "metadata": {"labels": labels},
            "spec": {
                "backoffLimit": 3,
                "activeDeadlineSeconds": TICK_DEADLINE_SECONDS + delay,
                "ttlSecondsAfterFinished": 600,
                "template": {"metadata": {"labels": labels}, "spec": pod},
            },
        },
    }
    # With catch-up on, older misses are the operator's (in order, bounded); the CronJob controller
    # looks back no further than the window, so it never meets its '>100 missed starts' failure.
    deadlines = [d for d in (schedule.starting_deadline_seconds, schedule.catchup_window_seconds) if d]
    if deadlines:
        spec["startingDeadlineSeconds"] = min(deadlines)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": cronjob_name(meta["name"], meta["uid"]),
            "namespace": meta["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(agent)],
        },
        "spec": spec,
    }
