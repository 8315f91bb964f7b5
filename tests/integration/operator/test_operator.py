"""The operator on a real API server: Agents, Executions, Jobs, status, cancel, schedules."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.resources.admissionregistration_v1 import ValidatingWebhookConfiguration
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import ConfigMap
from lightkube.types import PatchType

from agentry_common.naming import cronjob_name, job_name
from agentry_localcluster.kube import REPO, ControlPlane
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import APPROVAL_REPORT, eventually, job_pod, play_kubelet
from tests.fixtures.operator import OperatorProcess

pytestmark = pytest.mark.integration

SPEC = {"instructions": "Summarise the news.", "model": {"name": "claude-sonnet-4-5"}}


def make_agent(client: Client, ns: str, name: str = "news", **spec: Any) -> Any:
    return client.create(
        Agent.from_dict({"metadata": {"name": name, "namespace": ns}, "spec": {**SPEC, **spec}})
    )


def make_execution(client: Client, ns: str, name: str, agent: str = "news", **spec: Any) -> Any:
    return client.create(
        Execution.from_dict(
            {"metadata": {"name": name, "namespace": ns}, "spec": {"agentRef": {"name": agent}, **spec}}
        )
    )


def status(client: Client, res: Any, name: str, ns: str) -> dict[str, Any]:
    return dict(client.get(res, name, namespace=ns).status or {})


def condition(st: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), None)


def wait_phase(client: Client, name: str, ns: str, phase: str, timeout: float = 30) -> dict[str, Any]:
    return eventually(  # type: ignore[no-any-return]
        lambda: (s := status(client, Execution, name, ns)).get("phase") == phase and s,
        timeout,
        f"execution {name} to reach {phase}",
    )


def test_agent_becomes_ready_with_printer_columns(
    kube: ControlPlane, kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    make_agent(kube_client, namespace)
    eventually(
        lambda: (
            (condition(status(kube_client, Agent, "news", namespace), "Ready") or {}).get("status") == "True"
        ),
        what="Agent Ready",
    )
    out = kube.kubectl("get", "agents", "-n", namespace).stdout
    header = out.splitlines()[0].split()
    assert header[:4] == ["NAME", "READY", "REASON", "SCHEDULE"]
    assert "NEXT" in header and "AGE" in header
    assert out.splitlines()[1].split()[:3] == ["news", "True", "Reconciled"]
    assert status(kube_client, Agent, "news", namespace)["observedGeneration"] == 1


def test_execution_runs_to_success_with_result_and_usage(
    kube: ControlPlane, kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    make_agent(kube_client, namespace, tools=["files"])
    ex = make_execution(kube_client, namespace, "run1", input="today", correlationId="corr-123")
    child = job_name("run1", ex.metadata.uid)
    job = eventually(lambda: kube_client.get(Job, child, namespace=namespace), what="the Job")

    # The Job is the one the builder promised: restricted pod, owner, labels, deadline, inputs.
    assert job.metadata.ownerReferences[0].uid == ex.metadata.uid
    assert job.metadata.labels["agentry.dev/agent"] == "news"
    assert job.spec.activeDeadlineSeconds == 1830 and job.spec.backoffLimit == 0
    pod_spec = job.spec.template.spec
    assert pod_spec.automountServiceAccountToken is False
    assert pod_spec.containers[0].securityContext.readOnlyRootFilesystem is True
    env = {e.name: e.value for e in pod_spec.containers[0].env}
    assert env["AGENTRY_CORRELATION_ID"] == "corr-123"
    inputs = job.spec.template.metadata.annotations
    assert inputs["agentry.dev/input.txt"] == "today" and '"files"' in inputs["agentry.dev/agent.json"]

    pod = job_pod(kube_client, namespace, child)
    play_kubelet(kube_client, pod, "Running")
    wait_phase(kube_client, "run1", namespace, "Running")
    play_kubelet(
        kube_client,
        pod,
        "Succeeded",
        0,
        {
            "stopReason": "end_turn",
            "summary": "All quiet.",
            "truncated": False,
            "usage": {
                "inputTokens": 1200,
                "outputTokens": 300,
                "costUSD": "0.0081",
                "model": "claude-sonnet-4-5",
                "turns": 2,
            },
        },
    )
    st = wait_phase(kube_client, "run1", namespace, "Succeeded")
    assert st["result"]["summary"] == "All quiet."
    assert st["usage"]["totalTokens"] == 1500 and st["usage"]["costUSD"] == "0.0081"
    assert st["correlationId"] == "corr-123" and st["jobName"] == child
    assert condition(st, "Succeeded")["status"] == "True"  # type: ignore[index]
    row = kube.kubectl("get", "ex", "run1", "-n", namespace).stdout.splitlines()
    assert row[0].split()[:6] == ["NAME", "AGENT", "PHASE", "TOKENS", "COST", "DURATION"]
    assert row[1].split()[:5] == ["run1", "news", "Succeeded", "1500", "0.0081"]

    # The Agent's status follows: last run and totals.
    eventually(
        lambda: (
            (status(kube_client, Agent, "news", namespace).get("totals") or {}).get("outputTokens") == 300
        ),
        what="agent totals",
    )
    assert status(kube_client, Agent, "news", namespace)["lastExecution"]["name"] == "run1"

    # Structured logs carry the correlation id; metrics count reconciles and phases.
    lines = [json.loads(line) for line in operator.proc.log.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("correlation_id") == "corr-123" for line in lines)
    metrics = operator.metrics()
    assert 'agentry_reconcile_total{kind="Execution",outcome="ok"}' in metrics
    assert 'agentry_executions{phase="Succeeded"}' in metrics


@pytest.mark.parametrize(
    ("code", "reason"), [(12, "MaxCostReached"), (2, "ConfigurationError"), (1, "RuntimeError")]
)
def test_failed_run_explains_why(
    kube_client: Client, operator: OperatorProcess, namespace: str, code: int, reason: str
) -> None:
    make_agent(kube_client, namespace)
    ex = make_execution(kube_client, namespace, "boom")
    pod = job_pod(kube_client, namespace, job_name("boom", ex.metadata.uid))
    play_kubelet(kube_client, pod, "Failed", code, {"stopReason": reason, "summary": ""})
    st = wait_phase(kube_client, "boom", namespace, "Failed")
    assert st["reason"] == reason
    assert f"exit code {code}" in st["message"]


def test_image_that_cannot_be_pulled_fails_the_run(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    make_agent(kube_client, namespace)
    ex = make_execution(kube_client, namespace, "noimg")
    child = job_name("noimg", ex.metadata.uid)
    pod = job_pod(kube_client, namespace, child)
    play_kubelet(kube_client, pod, "Pending", waiting=("ErrImagePull", "not found"))
    st = wait_phase(kube_client, "noimg", namespace, "Failed")
    assert st["reason"] == "ImagePullFailed" and "not found" in st["message"]


def test_cancel_deletes_the_job(kube_client: Client, operator: OperatorProcess, namespace: str) -> None:
    make_agent(kube_client, namespace)
    ex = make_execution(kube_client, namespace, "stopme")
    child = job_name("stopme", ex.metadata.uid)
    eventually(lambda: kube_client.get(Job, child, namespace=namespace), what="the Job")
    kube_client.patch(
        Execution, "stopme", {"spec": {"cancel": True}}, namespace=namespace, patch_type=PatchType.MERGE
    )
    wait_phase(kube_client, "stopme", namespace, "Cancelled")

    def job_gone() -> bool:
        try:
            job = kube_client.get(Job, child, namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return job.metadata.deletionTimestamp is not None

    eventually(job_gone, what="the Job to be deleted")


def test_deleting_execution_collects_job_via_real_gc(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    make_agent(kube_client, namespace)
    ex = make_execution(kube_client, namespace, "gc")
    child = job_name("gc", ex.metadata.uid)
    eventually(lambda: kube_client.get(Job, child, namespace=namespace), what="the Job")
    kube_client.delete(Execution, "gc", namespace=namespace)

    def gone() -> bool:
        try:
            kube_client.get(Job, child, namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    eventually(gone, what="garbage collection of the Job")


def test_kubectl_executions_are_adopted_and_go_with_their_agent(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    """Executions created bare (as kubectl would) get their Agent's label and owner reference once
    starts are quiet; deleting the Agent then collects them (real garbage collector)."""
    agent = make_agent(kube_client, namespace)
    names = [f"bare-{i}" for i in range(5)]
    for name in names:
        make_execution(kube_client, namespace, name)

    def adopted(name: str) -> bool:
        meta = kube_client.get(Execution, name, namespace=namespace).metadata
        owners = [o.uid for o in meta.ownerReferences or []]
        return (meta.labels or {}).get("agentry.dev/agent") == "news" and owners == [agent.metadata.uid]

    eventually(lambda: all(adopted(n) for n in names), what="adoption of every Execution")
    kube_client.delete(Agent, "news", namespace=namespace)

    def collected() -> bool:
        return not list(kube_client.list(Execution, namespace=namespace))

    eventually(collected, 60, "garbage collection of the Agent's Executions")


BAD_AGENTS = [
    ({"tools": ["http"]}, "spec.http.allowedHosts"),
    ({"tools": ["browser"]}, "spec.tools[0]"),
    ({"timeoutSeconds": 1}, "spec.timeoutSeconds"),
    ({"budget": {"maxCostPerRunUSD": "lots"}}, "spec.budget.maxCostPerRunUSD"),
    ({"schedule": {"cron": "* * *"}}, "spec.schedule.cron"),
    ({"schedule": {"cron": "61 * * * *"}}, "spec.schedule.cron"),
    ({"schedule": {"cron": "0 8 * * 1", "timeZone": "Mars/Olympus"}}, "spec.schedule.timeZone"),
    (
        {"schedule": {"cron": "0 8 * * 1", "concurrencyPolicy": "Sometimes"}},
        "spec.schedule.concurrencyPolicy",
    ),
    ({"instructions": "use key sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAA"}, "spec.instructions"),
    ({"secrets": [{"env": "KEY"}]}, "secretKeyRef or secretManager"),
    (
        {"secrets": [{"env": "ANTHROPIC_BASE_URL", "secretKeyRef": {"name": "s", "key": "k"}}]},
        "spec.secrets[0].env",
    ),
    ({"model": {"name": "m", "fallbacks": [{"name": "m"}]}}, "spec.model.fallbacks"),
    ({"approval": {"redTools": ["shell"]}}, "spec.approval.redTools"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_AGENTS, ids=[f for _, f in BAD_AGENTS])
def test_bad_agent_is_refused_naming_the_field(
    kube: ControlPlane, operator: OperatorProcess, namespace: str, spec: dict[str, Any], field: str
) -> None:
    manifest = {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {**SPEC, **spec},
    }
    result = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0, result.stdout
    assert field in result.stderr


def test_secret_value_field_is_refused(kube: ControlPlane, crds: None, namespace: str) -> None:
    manifest = {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "leak", "namespace": namespace},
        "spec": {
            **SPEC,
            "secrets": [{"env": "K", "value": "hunter2", "secretKeyRef": {"name": "s", "key": "k"}}],
        },
    }
    result = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0 and 'unknown field "spec.secrets[0].value"' in result.stderr


def test_execution_spec_is_immutable(kube_client: Client, crds: None, namespace: str) -> None:
    make_execution(kube_client, namespace, "fixed", agent="a")
    with pytest.raises(ApiError) as refused:
        kube_client.patch(
            Execution,
            "fixed",
            {"spec": {"agentRef": {"name": "b"}}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )
    assert "spec.agentRef is immutable" in str(refused.value)


def test_schedule_becomes_cronjob_with_time_zone(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    agent = make_agent(
        kube_client,
        namespace,
        schedule={"cron": "0 8 * * 1", "timeZone": "Asia/Seoul", "startingDeadlineSeconds": 300},
    )
    name = cronjob_name("news", agent.metadata.uid)
    cj = eventually(lambda: kube_client.get(CronJob, name, namespace=namespace), what="CronJob")
    assert cj.spec.schedule == "0 8 * * 1" and cj.spec.timeZone == "Asia/Seoul"
    assert cj.spec.startingDeadlineSeconds == 300 and cj.spec.suspend is False
    assert cj.metadata.ownerReferences[0].uid == agent.metadata.uid
    st = eventually(
        lambda: (s := status(kube_client, Agent, "news", namespace)).get("nextRunTime") and s,
        what="nextRunTime",
    )
    assert st["nextRunTime"].endswith("Z") and st["scheduleRef"] == f"CronJob/{name}"

    kube_client.patch(
        Agent,
        "news",
        {"spec": {"schedule": {"suspend": True}}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    eventually(
        lambda: kube_client.get(CronJob, name, namespace=namespace).spec.suspend, what="CronJob suspended"
    )
    kube_client.patch(
        Agent, "news", {"spec": {"schedule": None}}, namespace=namespace, patch_type=PatchType.MERGE
    )

    def removed() -> bool:
        try:
            kube_client.get(CronJob, name, namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    eventually(removed, what="CronJob removed with the schedule")


@pytest.mark.parametrize("policy", ["Forbid", "Replace"])
def test_concurrency_policy_on_scheduled_runs(
    kube_client: Client, operator: OperatorProcess, namespace: str, policy: str
) -> None:
    make_agent(kube_client, namespace, schedule={"cron": "*/5 * * * *", "concurrencyPolicy": policy})
    first = make_execution(kube_client, namespace, "tick1", trigger="Schedule")
    eventually(
        lambda: kube_client.get(Job, job_name("tick1", first.metadata.uid), namespace=namespace),
        what="first Job",
    )
    make_execution(kube_client, namespace, "tick2", trigger="Schedule")
    if policy == "Forbid":
        st = wait_phase(kube_client, "tick2", namespace, "Skipped")
        assert st["reason"] == "ConcurrencyForbidden" and "tick1" in st["message"]
        assert status(kube_client, Execution, "tick1", namespace)["phase"] != "Cancelled"
        eventually(
            lambda: status(kube_client, Agent, "news", namespace).get("missedRuns") == 1,
            what="missed run counted",
        )
    else:
        wait_phase(kube_client, "tick1", namespace, "Cancelled")
        eventually(
            lambda: status(kube_client, Execution, "tick2", namespace).get("jobName"),
            what="the replacing run to start",
        )
        assert status(kube_client, Execution, "tick2", namespace)["phase"] == "Pending"


def _refused_by_the_webhook(kube_client: Client, ns: str, name: str, patch: dict[str, Any]) -> bool:
    """Whether the API server refuses this change for the webhook's reason (checked in a dry run)."""
    try:
        kube_client.patch(Agent, name, patch, namespace=ns, patch_type=PatchType.MERGE, dry_run=True)
    except ApiError as exc:
        return "spec.schedule.cron" in str(exc)
    return False


def _agent_webhooks(kube_client: Client) -> list[dict[str, Any]]:
    """The ValidatingWebhookConfigurations that intercept Agents (the operator's own, kopf-managed)."""
    found = []
    for config in kube_client.list(ValidatingWebhookConfiguration):
        doc = config.to_dict()
        rules = [r for w in doc.get("webhooks") or [] for r in w.get("rules") or []]
        if any("agents" in (r.get("resources") or []) for r in rules):
            found.append(doc)
    return found


def test_invalid_spec_that_slips_through_is_reported(
    kube: ControlPlane, kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    """With the webhook bypassed (its configuration removed), the operator still reports InvalidSpec."""
    make_agent(kube_client, namespace, "valid")
    eventually(
        lambda: (
            (condition(status(kube_client, Agent, "valid", namespace), "Ready") or {}).get("status") == "True"
        ),
        what="Ready",
    )
    bad = {"spec": {"schedule": {"cron": "0 25 * * *"}}}
    # With the webhook in place the change is refused; it would never reach the operator.
    assert _refused_by_the_webhook(kube_client, namespace, "valid", bad)
    webhooks = _agent_webhooks(kube_client)
    assert webhooks, "no ValidatingWebhookConfiguration intercepts Agents"
    try:
        for doc in webhooks:
            kube_client.delete(ValidatingWebhookConfiguration, doc["metadata"]["name"])
        # The API server drops the webhook once its informer sees the deletion: then the change is stored.
        eventually(
            lambda: kube_client.patch(Agent, "valid", bad, namespace=namespace, patch_type=PatchType.MERGE),
            what="the invalid change to get past the removed webhook",
        )
    finally:
        for doc in webhooks:
            meta = doc["metadata"]
            doc["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if meta.get(k)}
            kube_client.create(ValidatingWebhookConfiguration.from_dict(doc))
    agent = kube_client.get(Agent, "valid", namespace=namespace)
    assert agent.spec["schedule"]["cron"] == "0 25 * * *"  # it did slip through
    generation = agent.metadata.generation  # type: ignore[union-attr]
    st = eventually(
        lambda: (
            (s := status(kube_client, Agent, "valid", namespace)).get("observedGeneration") == generation
            and (condition(s, "Ready") or {}).get("reason") == "InvalidSpec"
            and s
        ),
        what="Ready=False InvalidSpec for the invalid generation",
    )
    ready = condition(st, "Ready") or {}
    assert ready["status"] == "False" and "cron" in ready["message"], ready
    # The webhook is back for the tests that follow.
    eventually(
        lambda: _refused_by_the_webhook(
            kube_client, namespace, "valid", {"spec": {"schedule": {"cron": "61 * * * *"}}}
        ),
        what="the restored webhook to refuse again",
    )


def test_samples_are_accepted_by_the_api_server(
    kube: ControlPlane, operator: OperatorProcess, namespace: str
) -> None:
    samples = REPO / "manifests" / "samples"
    for name in ("agent-on-demand.yaml", "agent-scheduled.yaml"):
        kube.kubectl("apply", "-n", namespace, "-f", str(samples / name))
    kube.kubectl("create", "-n", namespace, "-f", str(samples / "execution.yaml"))
    out = kube.kubectl("get", "agentry", "-n", namespace, "-o", "name").stdout.split()
    assert {"agent.agentry.dev/hello", "agent.agentry.dev/weekly-stock"} <= set(out)
    assert any(n.startswith("execution.agentry.dev/hello-") for n in out)


def _pause(kube_client: Client, ns: str, name: str) -> dict[str, Any]:
    ex = make_execution(kube_client, ns, name)
    pod = job_pod(kube_client, ns, job_name(name, ex.metadata.uid))
    play_kubelet(kube_client, pod, "Failed", 30, APPROVAL_REPORT)
    return wait_phase(kube_client, name, ns, "WaitingApproval")


def _decide(kube_client: Client, ns: str, name: str, approved: bool) -> None:
    kube_client.patch(
        Execution,
        name,
        {
            "spec": {
                "approvals": [
                    {
                        "id": APPROVAL_REPORT["approval"]["id"],
                        "approved": approved,
                        "decidedBy": "alice",
                        "reason": "looks fine" if approved else "not today",
                    }
                ]
            }
        },
        namespace=ns,
        patch_type=PatchType.MERGE,
    )


def test_approval_pauses_then_resumes_in_a_new_job(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    make_agent(kube_client, namespace, tools=["http"], http={"allowedHosts": ["api.example.com"]})
    st = _pause(kube_client, namespace, "risky")
    assert st["approval"]["id"] == "apr-0123456789abcdef" and st["approval"]["tool"] == "http"
    assert st["approval"]["summary"] == "POST https://api.example.com/report"
    assert st["approval"]["expiresAt"] > st["approval"]["requestedAt"]
    first_job = st["jobName"]

    _decide(kube_client, namespace, "risky", approved=True)
    st = eventually(
        lambda: (s := status(kube_client, Execution, "risky", namespace)).get("jobName") != first_job and s,
        what="the resume Job",
    )
    assert st["reason"] == "Resumed" and "alice" in st["message"] and not st.get("approval")
    resumed = kube_client.get(Job, st["jobName"], namespace=namespace)
    sources = resumed.spec.template.spec.volumes[0].projected.sources
    assert [s.configMap.items[0].path for s in sources if s.configMap] == ["resume.json"]
    cm = kube_client.get(ConfigMap, st["jobName"], namespace=namespace)
    decision = json.loads(cm.data["resume.json"])["decision"]
    assert decision == {
        "approvalId": "apr-0123456789abcdef",
        "approved": True,
        "decidedBy": "alice",
        "reason": "looks fine",
    }

    play_kubelet(
        kube_client,
        job_pod(kube_client, namespace, st["jobName"]),
        "Succeeded",
        0,
        {
            "stopReason": "end_turn",
            "summary": "Posted.",
            "usage": {"inputTokens": 300, "outputTokens": 30, "costUSD": "0.003", "turns": 2},
        },
    )
    st = wait_phase(kube_client, "risky", namespace, "Succeeded")
    assert st["result"]["summary"] == "Posted." and st["usage"]["totalTokens"] == 330


def test_denied_approval_cancels_the_run(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    make_agent(kube_client, namespace)
    _pause(kube_client, namespace, "nope")
    _decide(kube_client, namespace, "nope", approved=False)
    st = wait_phase(kube_client, "nope", namespace, "Cancelled")
    assert st["reason"] == "ApprovalDenied" and st["message"] == "alice denied http: not today"


def test_kubectl_explain_reads_like_documentation(kube: ControlPlane, crds: None) -> None:
    out = eventually(
        lambda: kube.kubectl("explain", "agent.spec.schedule", check=False).stdout,
        timeout=60,
        what="the CRD's OpenAPI to be published",
    )
    assert "IANA time zone name" in out and "enum: Allow, Forbid, Replace" in out
    assert "cron\t<string> -required-" in out


def test_history_limits_prune_and_keep_totals(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    make_agent(kube_client, namespace, historyLimits={"succeeded": 1, "failed": 1})
    for name in ("old", "new"):
        ex = make_execution(kube_client, namespace, name)
        pod = job_pod(kube_client, namespace, job_name(name, ex.metadata.uid))
        play_kubelet(
            kube_client,
            pod,
            "Succeeded",
            0,
            {"summary": name, "usage": {"inputTokens": 10, "outputTokens": 5, "costUSD": "0.01"}},
        )
        wait_phase(kube_client, name, namespace, "Succeeded")
        time.sleep(1.05 - time.time() % 1)  # the next run in a later second: its times sort after

    def pruned() -> bool:
        names = {e.metadata.name for e in kube_client.list(Execution, namespace=namespace)}
        return names == {"new"}

    eventually(pruned, what="the oldest Execution pruned by historyLimits")
    st = eventually(
        lambda: (
            (s := status(kube_client, Agent, "news", namespace)).get("archived", {}).get("executions") == 1
            and s
        ),
        what="archive",
    )
    assert st["archived"]["names"] == ["old"]
    assert st["totals"]["executions"] == 2 and st["totals"]["inputTokens"] == 20
    assert st["totals"]["costUSD"] == "0.02"
