"""Workflows on a real API server with the operator: a diamond under a parallelism bound with results
passed downstream, failure policies, retries with backoff, admission of bad graphs and runs, and an
operator killed mid-workflow. Step pods are completed through pods/status (play_kubelet)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import Job
from lightkube.types import PatchType

from agentry_common import workflows as w
from agentry_common.naming import job_name
from agentry_localcluster.kube import REPO, ControlPlane
from agentry_operator.kube import Agent, Execution
from agentry_operator.workflows.resources import Workflow, WorkflowRun
from tests.fixtures.helpers import APPROVAL_REPORT, eventually, job_pod, play_kubelet
from tests.fixtures.operator import OperatorProcess, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

AGENT = {"instructions": "Do the step.", "model": {"name": "claude-sonnet-4-5"}}


def setup(
    client: Client, ns: str, steps: list[dict[str, Any]], agents: dict[str, Any] | None = None, **spec: Any
) -> None:
    for agent in {s["agentRef"]["name"] for s in steps}:
        body = (agents or {}).get(agent, AGENT)
        client.create(Agent.from_dict({"metadata": {"name": agent, "namespace": ns}, "spec": body}))
    client.create(
        Workflow.from_dict({"metadata": {"name": "wf", "namespace": ns}, "spec": {"steps": steps, **spec}})
    )


def start_run(client: Client, ns: str, name: str = "r1", **params: str) -> None:
    body = {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"workflowRef": {"name": "wf"}, "parameters": params},
    }
    client.create(WorkflowRun.from_dict(body))


def step(name: str, *deps: str, agent: str = "worker", **extra: Any) -> dict[str, Any]:
    return {"name": name, "agentRef": {"name": agent}, "dependsOn": list(deps), **extra}


def execution(client: Client, ns: str, name: str, timeout: float = 30) -> Any:
    return eventually(lambda: client.get(Execution, name, namespace=ns), timeout, f"execution {name}")


def exists(client: Client, ns: str, name: str) -> bool:
    try:
        client.get(Execution, name, namespace=ns)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    return True


def finish(
    client: Client,
    ns: str,
    name: str,
    ok: bool = True,
    tokens: int = 100,
    cost: str = "0.01",
    outputs: dict[str, str] | None = None,
) -> None:
    """Complete the pod of Execution `name` as a kubelet would, reporting a summary and usage."""
    ex = execution(client, ns, name)
    pod = job_pod(client, ns, job_name(name, ex.metadata.uid))
    report: dict[str, Any] = {
        "stopReason": "end_turn" if ok else "RuntimeError",
        "summary": f"result of {name}",
        "usage": {"inputTokens": tokens, "outputTokens": 0, "costUSD": cost, "model": "claude-sonnet-4-5"},
    }
    if outputs:
        report["outputs"] = outputs
    play_kubelet(client, pod, "Succeeded" if ok else "Failed", 0 if ok else 1, report)


def status_of(obj: Any) -> dict[str, Any]:
    return dict(obj.status or {})


def run_status(client: Client, ns: str, name: str = "r1") -> dict[str, Any]:
    return status_of(client.get(WorkflowRun, name, namespace=ns))


def steps_of(client: Client, ns: str, name: str = "r1") -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in run_status(client, ns, name).get("steps") or []}


def wait_step(client: Client, ns: str, name: str, phase: str, run: str = "r1") -> dict[str, Any]:
    return eventually(  # type: ignore[no-any-return]
        lambda: (s := steps_of(client, ns, run).get(name, {})).get("phase") == phase and s,
        what=f"step {name} {phase}",
    )


def wait_run(client: Client, ns: str, phase: str, run: str = "r1") -> dict[str, Any]:
    return eventually(  # type: ignore[no-any-return]
        lambda: (s := run_status(client, ns, run)).get("phase") == phase and s, what=f"run {phase}"
    )


def test_diamond_runs_branches_in_parallel_and_passes_results_down(
    kube: ControlPlane, kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    setup(
        kube_client,
        namespace,
        [
            step("a", input="fetch {{ params.topic }}"),
            step("b", "a", input="left of {{ steps.a.summary }}"),
            step("c", "a", input="right"),
            step(
                "d",
                "b",
                "c",
                input="merge [{{ steps.b.summary }}] and [{{ steps.c.summary }}] ({{ run.name }})",
            ),
        ],
        parameters=[{"name": "topic", "default": "news"}],
        parallelism=2,
    )
    start_run(kube_client, namespace, topic="markets")
    a = execution(kube_client, namespace, "r1-a-1")
    assert a.spec["input"] == "fetch markets"
    assert a.metadata.labels[w.LABEL_WORKFLOW_RUN] == "r1" and a.metadata.labels[w.LABEL_WORKFLOW_STEP] == "a"
    assert a.metadata.ownerReferences[0].kind == "WorkflowRun"
    assert not exists(kube_client, namespace, "r1-b-1")
    finish(kube_client, namespace, "r1-a-1", tokens=10, cost="0.001")

    b, c = execution(kube_client, namespace, "r1-b-1"), execution(kube_client, namespace, "r1-c-1")
    assert b.spec["input"] == "left of result of r1-a-1" and c.spec["input"] == "right"
    # Both branches run at once (parallelism 2); d waits for both.
    running = wait_step(kube_client, namespace, "c", "Running")
    assert running["attempts"] == 1 and steps_of(kube_client, namespace)["b"]["phase"] == "Running"
    finish(kube_client, namespace, "r1-b-1", tokens=20, cost="0.002")
    wait_step(kube_client, namespace, "b", "Succeeded")
    assert not exists(kube_client, namespace, "r1-d-1")
    assert steps_of(kube_client, namespace)["d"]["phase"] == "Pending"
    finish(kube_client, namespace, "r1-c-1", tokens=30, cost="0.003")

    d = execution(kube_client, namespace, "r1-d-1")
    assert d.spec["input"] == "merge [result of r1-b-1] and [result of r1-c-1] (r1)"
    finish(kube_client, namespace, "r1-d-1", tokens=40, cost="0.004")
    st = wait_run(kube_client, namespace, "Succeeded")
    assert st["totals"] == {"tokens": 100, "costUSD": "0.01"}
    assert st["progress"] == "4/4" and st["reason"] == "AllStepsSucceeded"
    assert {s["name"]: s["tokens"] for s in st["steps"]} == {"a": 10, "b": 20, "c": 30, "d": 40}
    assert all(s["completionTime"] >= s["startTime"] for s in st["steps"])
    last = eventually(lambda: status_of(kube_client.get(Workflow, "wf", namespace=namespace)).get("lastRun"))
    assert last["name"] == "r1" and last["phase"] == "Succeeded" and last["costUSD"] == "0.01"
    rows = kube.kubectl("get", "wfr", "-n", namespace).stdout.splitlines()
    assert rows[0].split()[:5] == ["NAME", "WORKFLOW", "PHASE", "STEPS", "COST"]
    assert rows[1].split()[:5] == ["r1", "wf", "Succeeded", "4/4", "0.01"]


def test_parallelism_one_runs_ready_steps_by_priority(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    setup(kube_client, namespace, [step("low"), step("high", priority=7)], parallelism=1)
    start_run(kube_client, namespace)
    high = execution(kube_client, namespace, "r1-high-1")
    assert high.spec["priority"] == 7
    # The Execution is created before the run's status names it: wait for the status, not its key.
    wait_step(kube_client, namespace, "high", "Running")
    assert steps_of(kube_client, namespace)["low"]["phase"] == "Pending"
    assert not exists(kube_client, namespace, "r1-low-1")
    finish(kube_client, namespace, "r1-high-1")
    execution(kube_client, namespace, "r1-low-1")


@pytest.mark.parametrize("policy", ["FailFast", "ContinueIndependent"])
def test_failure_policies(
    kube_client: Client, operator: OperatorProcess, namespace: str, policy: str
) -> None:
    """a fails; c depends on a; d depends on b (independent of a); report runs Always."""
    steps = [step("a"), step("b"), step("c", "a"), step("d", "b"), step("report", "c", "d", when="Always")]
    setup(kube_client, namespace, steps, failurePolicy=policy)
    start_run(kube_client, namespace)
    execution(kube_client, namespace, "r1-b-1")
    finish(kube_client, namespace, "r1-a-1", ok=False)
    wait_step(kube_client, namespace, "a", "Failed")
    finish(kube_client, namespace, "r1-b-1")
    wait_step(kube_client, namespace, "b", "Succeeded")
    if policy == "FailFast":
        wait_step(kube_client, namespace, "d", "Skipped")
        assert not exists(kube_client, namespace, "r1-d-1")
    else:
        finish(kube_client, namespace, "r1-d-1")
        wait_step(kube_client, namespace, "d", "Succeeded")
    assert steps_of(kube_client, namespace)["c"]["phase"] == "Skipped"
    assert not exists(kube_client, namespace, "r1-c-1")
    finish(kube_client, namespace, "r1-report-1")  # Always: even after a FailFast stop
    st = wait_run(kube_client, namespace, "Failed")
    assert st["reason"] == "StepFailed" and "a" in st["message"]
    assert st["steps"][-1]["name"] == "report" and st["steps"][-1]["phase"] == "Succeeded"


def test_retry_starts_only_after_the_backoff(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    # Backoff is a passing state: long enough to be seen even when the operator notices the failure
    # late on a loaded machine (it goes straight to the retry once nextAttemptTime has passed).
    backoff = 20
    setup(kube_client, namespace, [step("flaky", retries={"limit": 1, "backoffSeconds": backoff})])
    start_run(kube_client, namespace)
    finish(kube_client, namespace, "r1-flaky-1", ok=False, tokens=5, cost="0.5")
    waiting = wait_step(kube_client, namespace, "flaky", "Backoff")
    assert not exists(kube_client, namespace, "r1-flaky-2")
    first = status_of(kube_client.get(Execution, "r1-flaky-1", namespace=namespace))
    second = execution(kube_client, namespace, "r1-flaky-2", timeout=backoff + 20)
    ended = dt.datetime.fromisoformat(first["completionTime"])
    created = second.metadata.creationTimestamp
    assert (created - ended).total_seconds() >= backoff
    assert dt.datetime.fromisoformat(waiting["nextAttemptTime"]) == ended + dt.timedelta(seconds=backoff)
    finish(kube_client, namespace, "r1-flaky-2", tokens=7, cost="0.25")
    st = wait_run(kube_client, namespace, "Succeeded")
    assert st["steps"][0]["attempts"] == 2 and st["steps"][0]["execution"] == "r1-flaky-2"
    assert st["totals"]["tokens"] == 12 and Decimal(st["totals"]["costUSD"]) == Decimal("0.75")


def test_a_step_waiting_for_approval_holds_only_its_dependents(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    risky = {**AGENT, "tools": ["http"], "http": {"allowedHosts": ["api.example.com"]}}
    risky["approval"] = {"requiredFor": ["RED"]}
    steps = [step("ask", agent="approver"), step("post", "ask"), step("other")]
    setup(kube_client, namespace, steps, agents={"approver": risky}, parallelism=1)
    start_run(kube_client, namespace)
    ask = execution(kube_client, namespace, "r1-ask-1")
    assert not exists(kube_client, namespace, "r1-other-1")  # parallelism 1: ask holds the slot
    play_kubelet(
        kube_client,
        job_pod(kube_client, namespace, job_name("r1-ask-1", ask.metadata.uid)),
        "Failed",
        30,
        APPROVAL_REPORT,
    )
    wait_step(kube_client, namespace, "ask", "WaitingApproval")
    # Waiting for a human frees the slot: the independent step starts, the dependent one waits.
    finish(kube_client, namespace, "r1-other-1")
    wait_step(kube_client, namespace, "other", "Succeeded")
    assert steps_of(kube_client, namespace)["post"]["phase"] == "Pending"
    assert not exists(kube_client, namespace, "r1-post-1")
    first_job = status_of(kube_client.get(Execution, "r1-ask-1", namespace=namespace))["jobName"]
    report: dict[str, Any] = APPROVAL_REPORT
    decision = {"id": report["approval"]["id"], "approved": True, "decidedBy": "alice"}
    kube_client.patch(
        Execution,
        "r1-ask-1",
        {"spec": {"approvals": [decision]}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )
    resumed = eventually(
        lambda: (
            (j := status_of(kube_client.get(Execution, "r1-ask-1", namespace=namespace)).get("jobName"))
            != first_job
            and j
        ),
        what="the resume Job",
    )
    play_kubelet(kube_client, job_pod(kube_client, namespace, resumed), "Succeeded", 0, {"summary": "posted"})
    post = execution(kube_client, namespace, "r1-post-1")
    assert post.metadata.labels[w.LABEL_WORKFLOW_STEP] == "post"


def test_the_run_deadline_cancels_running_steps_and_fails_the_run(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    setup(kube_client, namespace, [step("slow"), step("after", "slow")], deadlineSeconds=3)
    start_run(kube_client, namespace)
    execution(kube_client, namespace, "r1-slow-1")  # its pod never ends
    st = wait_run(kube_client, namespace, "Failed")
    assert st["reason"] == "DeadlineExceeded"
    assert {s["name"]: s["phase"] for s in st["steps"]} == {"slow": "Failed", "after": "Skipped"}
    ex = kube_client.get(Execution, "r1-slow-1", namespace=namespace)
    assert ex.spec["cancel"] is True
    run: Any = kube_client.get(WorkflowRun, "r1", namespace=namespace)
    ended = dt.datetime.fromisoformat(st["completionTime"])
    assert (ended - run.metadata.creationTimestamp).total_seconds() >= 3
    assert not exists(kube_client, namespace, "r1-after-1")


def refusal(fn: Any) -> str:
    with pytest.raises(ApiError) as info:
        fn()
    assert info.value.status.code in (400, 422)
    return str(info.value.status.message)


def test_admission_refuses_bad_workflows_and_runs(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    kube_client.create(
        Agent.from_dict({"metadata": {"name": "worker", "namespace": namespace}, "spec": AGENT})
    )

    def workflow(*steps: dict[str, Any], name: str = "bad", **spec: Any) -> Any:
        body = {"metadata": {"name": name, "namespace": namespace}, "spec": {"steps": list(steps), **spec}}
        return lambda: kube_client.create(Workflow.from_dict(body))

    cycle = refusal(workflow(step("x", "z"), step("y", "x"), step("z", "y")))
    assert "cycle" in cycle and all(n in cycle for n in ("x -> ", "y", "z")) and "spec.steps[" in cycle
    unknown = refusal(workflow(step("x", "ghost")))
    assert "spec.steps[0].dependsOn" in unknown and "ghost" in unknown
    agent = refusal(workflow(step("x", agent="nobody")))
    assert "spec.steps[0].agentRef.name" in agent and "nobody" in agent
    tmpl = refusal(workflow(step("x"), step("y", input="{{ steps.x.summary }} {{ params.nope }}")))
    assert "spec.steps[1].input" in tmpl and "nope" in tmpl
    sibling = refusal(workflow(step("x"), step("y", input="{{ steps.x.summary }}")))
    assert "spec.steps[1].input" in sibling and "not a dependency" in sibling
    high = refusal(workflow(step("x"), step("y", priority=9)))
    assert "spec.steps[1].priority" in high and "0..7" in high  # the Agent policy's range
    when = refusal(workflow(step("x", when="Failed")))
    assert "when" in when and "dependsOn" in when

    workflow(step("x", input="{{ params.must }}"), name="wf", parameters=[{"name": "must"}])()
    missing = refusal(lambda: start_run(kube_client, namespace, "r-none"))
    assert "spec.parameters.must" in missing
    extra = refusal(lambda: start_run(kube_client, namespace, "r-extra", must="1", other="2"))
    assert "spec.parameters.other" in extra
    body = {
        "metadata": {"name": "r-ghost", "namespace": namespace},
        "spec": {"workflowRef": {"name": "ghost"}},
    }
    ghost = refusal(lambda: kube_client.create(WorkflowRun.from_dict(body)))
    assert "spec.workflowRef.name" in ghost and "ghost" in ghost


@pytest.fixture
def own_operator(private_plane: ControlPlane, tmp_path: Path) -> Iterator[tuple[Client, OperatorProcess]]:
    op = start_operator(private_plane, tmp_path / "operator")
    with plane_client(private_plane, "wf-crash-test") as client:
        try:
            yield client, op
        finally:
            op.proc.stop()


def test_operator_killed_mid_workflow_creates_no_step_twice(
    own_operator: tuple[Client, OperatorProcess],
) -> None:
    """Killed while it creates a wide fan-out, and while pods end unwatched: every step still runs
    exactly once (one Execution, attempt 1), and the join sees its dependency's result."""
    client, op = own_operator
    ns = make_namespace(client, "wfcrash")
    fan = [f"f{i}" for i in range(8)]
    join = step("d", "b", "c", input="{{ steps.b.summary }}")
    setup(client, ns, [step("a"), step("b", "a"), step("c", "a"), *(step(f, "a") for f in fan), join])
    start_run(client, ns)
    finish(client, ns, "r1-a-1")
    # SIGKILL as soon as the first step of the fan-out exists: mid-reconcile, timers and locks lost.
    eventually(lambda: len(list(client.list(Execution, namespace=ns))) > 1, what="the fan-out to begin")
    op.proc.kill()
    op.proc.start()
    op.wait_healthy()
    for name in ("b", "c", *fan):  # each with its pod: they end below while the operator is down
        ex = execution(client, ns, f"r1-{name}-1")
        job_pod(client, ns, job_name(ex.metadata.name, ex.metadata.uid))
    op.proc.kill()
    finish(client, ns, "r1-b-1")  # the pods end while nobody watches
    for f in fan:
        finish(client, ns, f"r1-{f}-1")
    op.proc.start()
    op.wait_healthy()
    finish(client, ns, "r1-c-1")
    d = execution(client, ns, "r1-d-1")
    assert d.spec["input"] == "result of r1-b-1"
    op.proc.kill()
    op.proc.start()
    op.wait_healthy()
    finish(client, ns, "r1-d-1")
    st = wait_run(client, ns, "Succeeded")
    names = sorted(str(e.metadata.name) for e in client.list(Execution, namespace=ns) if e.metadata)
    assert names == sorted(f"r1-{n}-1" for n in ("a", "b", "c", "d", *fan))
    assert all(s["attempts"] == 1 and s["phase"] == "Succeeded" for s in st["steps"])
    assert st["progress"] == "12/12"


def test_the_sample_workflow_is_accepted_and_starts_its_sources_in_parallel(
    kube: ControlPlane, kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    samples = REPO / "manifests" / "samples"
    kube.kubectl("apply", "-n", namespace, "-f", str(samples / "workflow-morning-brief.yaml"))
    run = kube.kubectl("create", "-n", namespace, "-f", str(samples / "workflowrun.yaml"), "-o", "name")
    name = run.stdout.strip().split("/")[1]
    sources = ("hacker-news", "korea-herald", "bbc")
    for source in sources:
        ex = execution(kube_client, namespace, f"{name}-{source}-1")
        assert "semiconductors in Korea" in ex.spec["input"]
    assert not exists(kube_client, namespace, f"{name}-summarise-1")
    listed = kube.kubectl("get", "agentry", "-n", namespace, "-o", "name").stdout.split()
    assert "workflow.agentry.dev/morning-brief" in listed and f"workflowrun.agentry.dev/{name}" in listed


def test_a_step_whose_execution_is_refused_fails_with_the_reason(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    """a's summary looks like an API key: the Execution CRD refuses it as b's input (no secret in a
    CR), so b fails for good instead of being retried forever."""
    setup(kube_client, namespace, [step("a"), step("b", "a", input="{{ steps.a.summary }}")])
    start_run(kube_client, namespace)
    ex = execution(kube_client, namespace, "r1-a-1")
    leak = {"summary": "sk-ant-" + "A" * 24, "usage": {"inputTokens": 1, "outputTokens": 1, "costUSD": "0"}}
    play_kubelet(
        kube_client,
        job_pod(kube_client, namespace, job_name("r1-a-1", ex.metadata.uid)),
        "Succeeded",
        0,
        leak,
    )
    st = wait_run(kube_client, namespace, "Failed")
    b = next(s for s in st["steps"] if s["name"] == "b")
    assert b["phase"] == "Failed" and "looks like an API key" in b["message"]
    assert not exists(kube_client, namespace, "r1-b-1")
    assert "sk-ant-" not in str(st)  # the run's status copies no summary


def test_runs_beyond_the_history_limit_go_and_their_steps_stay_counted(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    """historyLimits.succeeded 1: the older of two finished runs is deleted, its step Executions are
    orphaned (not deleted) and the Agent's totals still count both runs."""
    setup(kube_client, namespace, [step("a")], historyLimits={"succeeded": 1})
    for run in ("r1", "r2"):
        time.sleep(1.05 - time.time() % 1)  # each run in a later second: its times sort after (whole seconds)
        start_run(kube_client, namespace, run)
        finish(kube_client, namespace, f"{run}-a-1", tokens=7)
        wait_run(kube_client, namespace, "Succeeded", run)

    def gone() -> bool:
        try:
            kube_client.get(WorkflowRun, "r1", namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    eventually(gone, 60, "r1 deleted by historyLimits")
    assert run_status(kube_client, namespace, "r2")["phase"] == "Succeeded"

    def orphaned() -> Any:
        ex = kube_client.get(Execution, "r1-a-1", namespace=namespace)
        owners = [o.kind for o in ex.metadata.ownerReferences or []]
        return "WorkflowRun" not in owners and ex  # its Agent still owns it

    orphan = eventually(orphaned, 60, "r1's step orphaned")
    assert orphan.status["phase"] == "Succeeded"
    totals = eventually(
        lambda: (
            (t := status_of(kube_client.get(Agent, "worker", namespace=namespace)).get("totals"))
            and t.get("executions") == 2
            and t.get("inputTokens") == 14
            and t
        ),
        60,
        "the Agent's totals",
    )
    assert totals["succeeded"] == 2


def test_named_outputs_of_a_step_reach_the_input_of_the_next(
    kube_client: Client, operator: OperatorProcess, namespace: str
) -> None:
    setup(
        kube_client,
        namespace,
        [
            step("fetch", outputs=["headline", "links"]),
            step(
                "post", "fetch", input="{{ steps.fetch.outputs.headline }} / {{ steps.fetch.outputs.links }}"
            ),
        ],
    )
    start_run(kube_client, namespace)
    fetch = execution(kube_client, namespace, "r1-fetch-1")
    assert fetch.spec["outputs"] == ["headline", "links"]
    job = eventually(  # the step's Execution exists before its Job
        lambda: kube_client.get(Job, job_name("r1-fetch-1", fetch.metadata.uid), namespace=namespace),
        30,
        "the Job of r1-fetch-1",
    )
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env["AGENTRY_OUTPUTS"] == "headline,links"
    # The pod reports one asked-for output and one it was not asked for: only the first is kept.
    finish(kube_client, namespace, "r1-fetch-1", outputs={"headline": "Fabs expand", "other": "x"})
    post = execution(kube_client, namespace, "r1-post-1")
    assert post.spec["input"] == "Fabs expand / "
    assert status_of(execution(kube_client, namespace, "r1-fetch-1"))["result"]["outputs"] == {
        "headline": "Fabs expand"
    }
