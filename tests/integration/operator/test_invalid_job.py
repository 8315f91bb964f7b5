"""Specs the CRD admits but whose Job the API server refuses.

On the real API server and the real operator. An Agent whose runs' Job would be invalid (a memory
request above the default limit, a negative quantity, 65536 non-ASCII instruction characters escaped
past the 256 KiB limit of the pod's annotations) is refused when it is written: the webhook dry-runs
that Job and names the field. What only a run brings (its Execution's input, which joins the Agent's
instructions in the annotations) is found when the Job is created: that Execution ends Failed
(InvalidJob) after one refused create, never retried, while a ResourceQuota that is used up only holds
a run (Pending, QuotaExceeded) until there is room, and an Execution created afterwards runs normally.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ResourceQuota
from lightkube.types import PatchType

from agentry_common.naming import job_name
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import eventually, job_pod, play_kubelet
from tests.fixtures.operator import OperatorProcess

pytestmark = pytest.mark.integration

SPEC = {"instructions": "Summarise the news.", "model": {"name": "claude-sonnet-4-5"}}
REPORT = {
    "stopReason": "end_turn",
    "summary": "done",
    "truncated": False,
    "usage": {"inputTokens": 1, "outputTokens": 1, "costUSD": "0", "model": "m", "turns": 1},
}
# Agent -> (spec changes, what the refusal must name: the field, its origin, the server's words)
REFUSED_AGENTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "inv-memory": (
        {"resources": {"requests": {"memory": "2Gi"}}},
        (
            "field spec.template.spec.containers[0].resources.requests",
            "from the Agent's spec.resources",
            "must be less than or equal to memory limit",
        ),
    ),
    "inv-negative": (
        {"resources": {"limits": {"cpu": "-1"}}},
        ("spec.template.spec.containers[0].resources.limits[cpu]", "must be greater than or equal to 0"),
    ),
    "inv-wide": (
        {"instructions": "é" * 65536},
        ("annotations", "spec.instructions", "Too long", "262144 bytes"),
    ),
}
# Execution -> (its Agent's spec changes, its input, what status.message must name). 40000 "é" are
# 240000 bytes escaped in agent.json (admitted); with 65536 more of input the annotations do not fit.
INVALID: dict[str, tuple[dict[str, Any], str, tuple[str, ...]]] = {
    "inv-input": (
        {"instructions": "é" * 40000},
        "é" * 65536,
        ("annotations", "the Execution's spec.input", "Too long", "262144 bytes"),
    ),
}


def create(client: Client, res: Any, ns: str, name: str, spec: dict[str, Any]) -> Any:
    return client.create(res.from_dict({"metadata": {"name": name, "namespace": ns}, "spec": spec}))


def status(client: Client, name: str, ns: str) -> dict[str, Any]:
    return dict(client.get(Execution, name, namespace=ns).status or {})


def job_exists(client: Client, name: str, ns: str) -> bool:
    try:
        client.get(Job, name, namespace=ns)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    return True


def log_count(log: Path, text: str) -> int:
    return log.read_text(errors="replace").count(text)


def test_refused_jobs_fail_once_and_the_operator_moves_on(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    log = operator.proc.log
    for name, (changes, expected) in REFUSED_AGENTS.items():
        with pytest.raises(ApiError) as refused:
            create(kube_client, Agent, namespace, name, {**SPEC, **changes})
        assert refused.value.status.code in (400, 422), refused.value.status
        message = refused.value.status.message or ""
        assert "the Job of this agent's runs would be refused" in message, message
        for part in expected:
            assert part in message, (part, message)
    assert list(kube_client.list(Agent, namespace=namespace)) == []

    uids = {}
    for name, (changes, text, _) in INVALID.items():
        create(kube_client, Agent, namespace, name, {**SPEC, **changes})
        uids[name] = create(
            kube_client, Execution, namespace, name, {"agentRef": {"name": name}, "input": text}
        ).metadata.uid
    for name, (_, _, expected) in INVALID.items():
        st = eventually(
            lambda n=name: (s := status(kube_client, n, namespace)).get("phase") == "Failed" and s,
            60,
            f"{name} to fail",
        )
        assert st["reason"] == "InvalidJob", st
        child = job_name(name, uids[name])
        assert st["message"].startswith(f"the API server refused to create Job {child} (HTTP 422 Invalid)")
        for part in expected:
            assert part in st["message"], (part, st["message"])
        succeeded = next(c for c in st["conditions"] if c["type"] == "Succeeded")
        assert (succeeded["status"], succeeded["reason"]) == ("False", "InvalidJob")
        assert "jobName" not in st and not job_exists(kube_client, child, namespace)

    # A clock for the observation window: a run held by a used-up ResourceQuota is retried (with
    # backoff, Pending/QuotaExceeded). Once it has been retried twice, the refused runs (which the
    # operator retried every 5 s before) have had time to be retried, and were not.
    kube_client.create(
        ResourceQuota.from_dict(
            {
                "metadata": {"name": "jobs", "namespace": namespace},
                "spec": {"hard": {"count/jobs.batch": "1"}},
            }
        )
    )
    eventually(
        lambda: (kube_client.get(ResourceQuota, "jobs", namespace=namespace).status or {}).hard,  # type: ignore[union-attr]
        60,
        "the quota's status",
    )
    create(kube_client, Agent, namespace, "ok", SPEC)
    ok = create(kube_client, Execution, namespace, "ok-run", {"agentRef": {"name": "ok"}})
    ok_job = job_name("ok-run", ok.metadata.uid)
    eventually(lambda: job_exists(kube_client, ok_job, namespace), 60, "the Job of ok-run")
    held = create(kube_client, Execution, namespace, "held-run", {"agentRef": {"name": "ok"}})
    st = eventually(
        lambda: (s := status(kube_client, "held-run", namespace)).get("reason") == "QuotaExceeded" and s,
        60,
        "held-run to wait for quota",
    )
    assert st["phase"] == "Pending" and "exceeded quota: jobs" in st["message"], st
    eventually(lambda: log_count(log, "starting execution held-run failed, retrying") >= 3, 120, "retries")
    for name in INVALID:
        assert log_count(log, f"execution {name} failed: the API server refused to create Job") == 1
        assert log_count(log, f"starting execution {name} failed") == 0
        assert status(kube_client, name, namespace)["reason"] == "InvalidJob"

    # The run created after the refused ones runs normally, and the held one starts once there is room.
    pod = job_pod(kube_client, namespace, ok_job)
    play_kubelet(kube_client, pod, "Running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    eventually(lambda: status(kube_client, "ok-run", namespace).get("phase") == "Succeeded", 60, "ok-run")
    kube_client.patch(
        ResourceQuota,
        "jobs",
        {"spec": {"hard": {"count/jobs.batch": "5"}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    held_job = job_name("held-run", held.metadata.uid)
    eventually(lambda: job_exists(kube_client, held_job, namespace), 120, "the Job of held-run")
    st = eventually(
        lambda: (s := status(kube_client, "held-run", namespace)).get("jobName") == held_job and s,
        60,
        "held-run to record its Job",
    )
    assert st["phase"] == "Pending" and st["reason"] != "QuotaExceeded", st
