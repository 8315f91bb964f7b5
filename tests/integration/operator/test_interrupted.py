"""A run whose pod stops at a checkpoint (exit code 75, INTERRUPTED) on a real API server and Job
controller: the Job's podFailurePolicy ends that Job, the operator starts the run's next Job at once
(not after the Job controller's failure back-off), and the Execution stays Running with reason
Interrupted meanwhile, never Failed; a run resumed too often (exit code 17) fails ResumeLimitReached
at once (docs/runs.md, "When a pod is lost").

The session's operator (without the LLM gateway: a run without a journal is restarted the same way),
the kubelet played through pods/status.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Pod

from agentry_common.naming import job_name
from agentry_operator.handlers.next_job import next_job_name
from agentry_operator.kube import Execution
from tests.fixtures.helpers import eventually, job_pod, play_kubelet
from tests.fixtures.operator import OperatorProcess

from .test_operator import make_agent, make_execution

pytestmark = pytest.mark.integration

CHECKPOINT = {"entries": 5, "resumes": 0, "interruptedCalls": 0, "lastAt": "2026-01-02T03:04:05Z"}


def status(client: Client, name: str, ns: str) -> dict[str, Any]:
    return dict(client.get(Execution, name, namespace=ns).status or {})


def wait_status(client: Client, name: str, ns: str, what: str, test: Any) -> dict[str, Any]:
    return eventually(  # type: ignore[no-any-return]
        lambda: (s := status(client, name, ns)) and test(s) and s, 30, f"{name}: {what}"
    )


def started(client: Client, ns: str, name: str) -> str:
    """A run of `news`; its Job's name once the Job exists."""
    ex = make_execution(client, ns, name)
    job = job_name(name, ex.metadata.uid)
    eventually(lambda: client.get(Job, job, namespace=ns), what=f"the Job of {name}")
    return job


def test_a_pod_that_stops_at_a_checkpoint_goes_on_in_a_next_job_and_the_run_never_fails_for_it(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    client, ns = kube_client, namespace
    make_agent(client, ns)
    job = started(client, ns, "long")
    first = job_pod(client, ns, job)
    play_kubelet(client, first, "Running")
    wait_status(client, "long", ns, "Running", lambda s: s.get("reason") == "Running")
    stopped = {"summary": "interrupted", "checkpoint": {**CHECKPOINT, "entries": 3}}
    play_kubelet(client, first, "Failed", 75, stopped)
    uid = client.get(Execution, "long", namespace=ns).metadata.uid  # type: ignore[union-attr]
    after = next_job_name({"name": "long", "uid": uid or ""}, job)
    st = wait_status(client, "long", ns, "the next Job", lambda s: s.get("jobName") == after)
    assert (st["phase"], st["reason"]) == ("Running", "Interrupted"), st  # never Failed for exit 75
    assert "resuming from checkpoint" in st["message"] and st["checkpoint"]["entries"] == 3
    # The Job controller fails that Job on exit 75 (its podFailurePolicy) and starts no other pod; the
    # operator does not wait for it to say so.
    eventually(
        lambda: client.get(Job, job, namespace=ns).status.failed == 1,  # type: ignore[union-attr]
        30,
        "the first Job failed by its podFailurePolicy",
    )
    assert len(list(client.list(Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": job}))) == 1

    second = job_pod(client, ns, after)
    play_kubelet(client, second, "Running")
    wait_status(client, "long", ns, "Running again", lambda s: s.get("reason") == "Running")
    resumed = {"summary": "done", "checkpoint": {**CHECKPOINT, "entries": 8, "resumes": 1}}
    play_kubelet(client, second, "Succeeded", 0, resumed)
    st = wait_status(client, "long", ns, "Succeeded", lambda s: s.get("phase") == "Succeeded")
    assert st["checkpoint"]["resumes"] == 1 and st["checkpoint"]["entries"] == 8
    assert st["result"]["summary"] == "done" and st["jobName"] == after
    jobs = client.list(Job, namespace=ns, labels={"agentry.dev/execution": "long"})
    assert sorted(str(j.metadata.name) for j in jobs if j.metadata) == sorted([job, after])


def test_a_run_resumed_too_often_fails_resume_limit_reached(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    client, ns = kube_client, namespace
    make_agent(client, ns)
    job = started(client, ns, "stuck")
    pod = job_pod(client, ns, job)
    report = {"summary": "resumed 3 times without progress", "checkpoint": {**CHECKPOINT, "resumes": 3}}
    play_kubelet(client, pod, "Failed", 17, json.dumps(report))
    st = wait_status(client, "stuck", ns, "Failed", lambda s: s.get("phase") == "Failed")
    assert st["reason"] == "ResumeLimitReached" and "exit code 17" in st["message"]
    assert st["checkpoint"]["resumes"] == 3
    pods = list(client.list(Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": job}))
    assert len(pods) == 1  # a final exit code: no replacement
