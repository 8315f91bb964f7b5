"""Runs bounded where the node is shared end with a reason that says which bound: a pod the kubelet
evicted for its own storage is `StorageLimitExceeded` (it used to read as the runtime's SIGTERM stop,
`DeadlineExceeded`, or as OOMKilled when killed with 137),
a tool that used up the pod's PIDs is the runtime's `PIDLimitExceeded` (final: the Job is not retried)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentry_common.conditions import Reason
from agentry_common.exitcodes import FINAL, REASONS, ExitCode
from agentry_common.models import Phase
from agentry_operator.builders.eviction import storage_eviction
from agentry_operator.builders.execution_status import observe
from agentry_operator.builders.job import build_job
from agentry_operator.settings import Settings

from .test_builders import AGENT, EXECUTION

pytestmark = pytest.mark.unit

FAILED = [
    {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "lastTransitionTime": "2026-01-01T00:01:00Z",
    }
]
# The kubelet's own words (pkg/kubelet/eviction/eviction_manager.go).
EMPTY_DIR = 'Usage of EmptyDir volume "workspace" exceeds the limit "1Gi". '
CONTAINER = 'Container agent exceeded its local ephemeral storage limit "2Gi". '
POD = "Pod ephemeral local storage usage exceeds the total limit of containers 2Gi. "
NODE_PRESSURE = "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, available: 10Mi. "


def _evicted(message: str, exit_code: int = 137) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"},
        "status": {
            "phase": "Failed",
            "reason": "Evicted",
            "message": message,
            "containerStatuses": [{"state": {"terminated": {"exitCode": exit_code, "reason": "Error"}}}],
        },
    }


def _job(failed: int = 1) -> dict[str, Any]:
    return {"spec": {}, "status": {"conditions": FAILED, "failed": failed}}


@pytest.mark.parametrize(("message", "exit_code"), [(EMPTY_DIR, 13), (CONTAINER, 137), (POD, 137)])
def test_a_pod_evicted_for_its_own_storage_ends_the_run_storage_limit_exceeded(
    message: str, exit_code: int
) -> None:
    seen = observe(_job(), [_evicted(message, exit_code)])
    assert (seen.phase, seen.reason) == (Phase.FAILED, Reason.STORAGE_LIMIT_EXCEEDED)
    assert f"({message.strip().rstrip('.')})" in seen.message
    assert "OOM" not in seen.message and "deadline" not in seen.message
    assert seen.completion_time == "2026-01-01T00:01:00Z"
    retried = observe(_job(failed=3), [_evicted(message)] * 3)
    assert "gave up after 3 attempt(s)" in retried.message


def test_node_pressure_is_not_the_runs_storage() -> None:
    assert storage_eviction(_evicted(NODE_PRESSURE)) is None
    assert storage_eviction({"status": {"reason": "Error", "message": EMPTY_DIR}}) is None
    seen = observe(_job(), [_evicted(NODE_PRESSURE)])
    assert seen.reason != Reason.STORAGE_LIMIT_EXCEEDED


def test_a_tool_that_used_up_the_pids_ends_the_run_pid_limit_exceeded_without_retry() -> None:
    assert ExitCode.PID_LIMIT in FINAL and Reason(REASONS[ExitCode.PID_LIMIT][0]) is Reason.PID_LIMIT_EXCEEDED
    summary = (
        "Stopped: a tool used up the pod's process limit (the kubelet's podPidsLimit): refused 7 fork(s)"
    )
    report = json.dumps({"stopReason": "pid_limit", "summary": summary})
    pod = _evicted("", exit_code=15)
    pod["status"] = {"containerStatuses": [{"state": {"terminated": {"exitCode": 15, "message": report}}}]}
    policy = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]
    seen = observe({"spec": {}, "status": {"conditions": policy}}, [pod])
    assert (seen.phase, seen.reason) == (Phase.FAILED, Reason.PID_LIMIT_EXCEEDED)
    assert seen.message.endswith(f"(exit code 15): {summary}")
    job = build_job(EXECUTION, AGENT, "corr", Settings())
    fail_job = job["spec"]["podFailurePolicy"]["rules"][0]
    assert 15 in fail_job["onExitCodes"]["values"] and fail_job["action"] == "FailJob"


def test_the_run_pods_writable_volumes_are_bounded() -> None:
    pod = build_job(EXECUTION, AGENT, "corr", Settings())["spec"]["template"]["spec"]
    dirs = {v["name"]: v["emptyDir"] for v in pod["volumes"] if "emptyDir" in v}
    assert dirs == {"workspace": {"sizeLimit": "1Gi"}, "tmp": {"sizeLimit": "1Gi"}}
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
