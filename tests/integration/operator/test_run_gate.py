"""Every path that starts a run passes the operator's run gate (docs/security.md, "Who may start a
run"): a real API server, the real operator with its webhook, and identities told apart by
impersonation. `mallory` may write every agentry.dev kind in the namespace (as in the outsider's
finding); the API's and the tick's ServiceAccounts act for owners. The quotas: 1 run at once and 3
runs a day per owner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Namespace
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding
from lightkube.types import PatchType

from agentry_common import constants as c
from agentry_common import workflows as w
from agentry_localcluster.kube import ControlPlane
from agentry_operator.handlers.run_gate import book_name
from agentry_operator.kube import Execution
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

API_SA = "system:serviceaccount:agentry:agentry-api"
TICK_SA = "system:serviceaccount:agentry:agentry-tick"
MALLORY = "mallory"
STATE_NS = "agentry"
SPEC: dict[str, Any] = {"instructions": "Summarise the news.", "model": {"name": "claude-sonnet-4-5"}}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("gate-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane) as c_:
        c_.create(Namespace.from_dict({"metadata": {"name": STATE_NS}}))
        yield c_


@pytest.fixture(scope="module")
def op(
    plane: ControlPlane, client: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    workdir = tmp_path_factory.mktemp("gate-operator")
    (workdir / "policy.json").write_text("{}")
    proc = start_operator(
        plane,
        workdir,
        AGENTRY_POLICY_FILE=str(workdir / "policy.json"),
        AGENTRY_OWNER_LABEL_WRITERS=json.dumps([API_SA, TICK_SA]),
        AGENTRY_QUOTA_CONCURRENT_RUNS="1",
        AGENTRY_QUOTA_RUNS_PER_DAY="3",
        AGENTRY_STATE_NAMESPACE=STATE_NS,
    )
    yield proc
    proc.proc.stop()


@pytest.fixture
def ns(plane: ControlPlane, client: Client, op: OperatorProcess) -> str:
    """A namespace where mallory, the API and the tick may write every agentry.dev kind."""
    name = make_namespace(client, "gate")
    rules = [
        {
            "apiGroups": ["agentry.dev"],
            "resources": ["agents", "executions", "workflows", "workflowruns"],
            "verbs": ["create", "get", "list", "patch", "update"],
        }
    ]
    client.create(Role.from_dict({"metadata": {"name": "writers", "namespace": name}, "rules": rules}))
    subjects = [{"kind": "User", "name": MALLORY, "apiGroup": "rbac.authorization.k8s.io"}] + [
        {"kind": "ServiceAccount", "name": sa, "namespace": "agentry"}
        for sa in ("agentry-api", "agentry-tick")
    ]
    binding = {
        "metadata": {"name": "writers", "namespace": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writers"},
        "subjects": subjects,
    }
    client.create(RoleBinding.from_dict(binding))
    for user in (MALLORY, API_SA, TICK_SA):
        eventually(
            lambda u=user: (
                as_user(plane, u, "auth", "can-i", "create", "workflowruns", "-n", name).returncode == 0
            ),
            what=f"{user}'s RBAC",
        )
    return name


def as_user(plane: ControlPlane, user: str, *args: str, input: str | None = None) -> Any:
    return plane.kubectl(f"--as={user}", *args, input=input, check=False)


def create_as(plane: ControlPlane, user: str, ns: str, manifest: dict[str, Any]) -> Any:
    return as_user(plane, user, "create", "-n", ns, "-f", "-", input=yaml.safe_dump(manifest))


def created(result: Any) -> None:
    assert result.returncode == 0, result.stderr


def created_after_restart(plane: ControlPlane, user: str, ns: str, manifest: dict[str, Any]) -> None:
    """A create right after the operator restarted: its webhook moves to new ports, and the API server
    is told so a moment later (kopf patches its configuration once it serves again)."""
    eventually(lambda: create_as(plane, user, ns, manifest).returncode == 0, what="the webhook back")


def refused(result: Any, *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "denied the request" in result.stderr, result.stderr  # the webhook, not RBAC or the schema
    for needle in needles:
        assert needle in result.stderr, result.stderr


def owned(owner: str) -> dict[str, str]:
    return {c.LABEL_OWNER: owner} if owner else {}


def agent(name: str, owner: str = "", **spec: Any) -> dict[str, Any]:
    meta = {"name": name, "labels": owned(owner)}
    return {"apiVersion": c.API_VERSION, "kind": "Agent", "metadata": meta, "spec": {**SPEC, **spec}}


def run(name: str, agent_name: str, owner: str = "") -> dict[str, Any]:
    meta = {"name": name, "labels": owned(owner)}
    return {
        "apiVersion": c.API_VERSION,
        "kind": "Execution",
        "metadata": meta,
        "spec": {"agentRef": {"name": agent_name}},
    }


def workflow(name: str, agents: list[str], owner: str = "", parallelism: int = 1) -> dict[str, Any]:
    steps = [{"name": f"s{i}", "agentRef": {"name": a}} for i, a in enumerate(agents)]
    meta = {"name": name, "labels": owned(owner)}
    spec = {"steps": steps, "parallelism": parallelism}
    return {"apiVersion": c.API_VERSION, "kind": w.WORKFLOW_KIND, "metadata": meta, "spec": spec}


def workflow_run(name: str, workflow_name: str, owner: str = "") -> dict[str, Any]:
    meta = {"name": name, "labels": owned(owner)}
    spec = {"workflowRef": {"name": workflow_name}}
    return {"apiVersion": c.API_VERSION, "kind": w.WORKFLOW_RUN_KIND, "metadata": meta, "spec": spec}


def status(client: Client, ns: str, name: str) -> dict[str, Any]:
    return dict(client.get(Execution, name, namespace=ns).status or {})


def wait_status(client: Client, ns: str, name: str, **want: str) -> dict[str, Any]:
    return eventually(  # type: ignore[no-any-return]
        lambda: (s := status(client, ns, name)) and all(s.get(k) == v for k, v in want.items()) and s,
        what=f"{name}: {want}",
    )


def started(client: Client, ns: str, name: str) -> bool:
    return bool(status(client, ns, name).get("jobName"))


def jobs_of(client: Client, ns: str, name: str) -> list[Any]:
    return list(client.list(Job, namespace=ns, labels={c.LABEL_EXECUTION: name}))


def cancel(client: Client, ns: str, name: str) -> None:
    client.patch(Execution, name, {"spec": {"cancel": True}}, namespace=ns, patch_type=PatchType.MERGE)
    wait_status(client, ns, name, phase="Cancelled")


def test_kubectl_users_start_their_own_agents_runs_only(plane: ControlPlane, client: Client, ns: str) -> None:
    created(create_as(plane, API_SA, ns, agent("victims", owner="alice")))
    refused(
        create_as(plane, MALLORY, ns, run("steal", "victims")),
        "spec.agentRef.name",
        "belongs to an Agentry user",
        "mallory may not",
    )
    # Labelled as the victim: the label itself is refused.
    refused(
        create_as(plane, MALLORY, ns, run("steal2", "victims", owner="alice")),
        f"metadata.labels.{c.LABEL_OWNER}",
    )
    # Her own Agent runs as before.
    created(create_as(plane, MALLORY, ns, agent("mine")))
    created(create_as(plane, MALLORY, ns, run("mine-1", "mine")))
    eventually(lambda: started(client, ns, "mine-1"), what="mallory's own run started")


def test_a_run_created_before_an_owned_agent_ends_without_a_job(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    created(create_as(plane, MALLORY, ns, run("early", "later")))  # no Agent yet: the webhook cannot tell
    wait_status(client, ns, "early", reason="AgentNotFound")
    created(create_as(plane, API_SA, ns, agent("later", owner="alice")))
    st = wait_status(client, ns, "early", phase="Failed", reason="OwnerMismatch")
    assert st["message"].startswith("spec.agentRef.name:"), st
    assert jobs_of(client, ns, "early") == [] and not st.get("jobName")


def test_a_run_names_only_its_owners_agents(plane: ControlPlane, client: Client, ns: str) -> None:
    created(create_as(plane, API_SA, ns, agent("alices", owner="alice")))
    created(create_as(plane, API_SA, ns, agent("nobodys")))
    refused(
        create_as(plane, API_SA, ns, run("cross", "alices", owner="bob")), f"metadata.labels.{c.LABEL_OWNER}"
    )
    # An Agent without owner (made with kubectl) runs for whoever the API labels the run for.
    created(create_as(plane, API_SA, ns, run("imported", "nobodys", owner="bob")))
    eventually(lambda: started(client, ns, "imported"), what="bob's run of a kubectl Agent started")
    # The tick acts for owners: its runs of an owned Agent carry the Agent's owner.
    created(create_as(plane, TICK_SA, ns, run("tick-1", "alices", owner="alice")))
    refused(
        create_as(plane, TICK_SA, ns, run("tick-2", "alices", owner="bob")),
        f"metadata.labels.{c.LABEL_OWNER}",
    )


def test_workflows_carry_and_keep_their_owner(plane: ControlPlane, client: Client, ns: str) -> None:
    created(create_as(plane, API_SA, ns, agent("wendys", owner="wendy")))
    created(create_as(plane, API_SA, ns, agent("walts", owner="walt")))
    # A namespace user plants a Workflow as another user: refused, like the same label on an Agent.
    refused(
        create_as(plane, MALLORY, ns, workflow("planted", ["wendys"], owner="wendy")),
        f"labels.{c.LABEL_OWNER}",
    )
    # ... or an unlabelled Workflow of a user's Agent, or a user's Workflow of another user's Agent.
    refused(create_as(plane, MALLORY, ns, workflow("borrow", ["wendys"])), "spec.steps[0].agentRef.name")
    refused(
        create_as(plane, API_SA, ns, workflow("mixed", ["wendys", "walts"], owner="wendy")), "spec.steps[1]"
    )
    created(create_as(plane, API_SA, ns, workflow("wendys-wf", ["wendys"], owner="wendy")))
    # Runs of it: only for its owner, and never by relabelling one later.
    refused(create_as(plane, MALLORY, ns, workflow_run("r-mallory", "wendys-wf")), f"labels.{c.LABEL_OWNER}")
    refused(
        create_as(plane, API_SA, ns, workflow_run("r-bob", "wendys-wf", owner="walt")), "Workflow's owner"
    )
    created(create_as(plane, API_SA, ns, workflow_run("r-alice", "wendys-wf", owner="wendy")))
    relabel = json.dumps({"metadata": {"labels": {c.LABEL_OWNER: "walt"}}})
    result = as_user(
        plane, MALLORY, "patch", "workflowrun", "r-alice", "-n", ns, "--type=merge", "-p", relabel
    )
    refused(result, f"labels.{c.LABEL_OWNER}")
    step = eventually(
        lambda: next(
            iter(client.list(Execution, namespace=ns, labels={w.LABEL_WORKFLOW_RUN: "r-alice"})), None
        ),
        what="the run's step",
    )
    assert step.metadata.labels[c.LABEL_OWNER] == "wendy"
    eventually(lambda: started(client, ns, step.metadata.name), what="the step started")


def test_workflow_fan_out_counts_against_the_owners_quota(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    created(create_as(plane, API_SA, ns, agent("fan", owner="fanner")))
    created(create_as(plane, API_SA, ns, workflow("fan", ["fan"] * 4, owner="fanner", parallelism=4)))
    created(create_as(plane, API_SA, ns, workflow_run("fan-1", "fan", owner="fanner")))

    def steps() -> list[Any]:
        return list(client.list(Execution, namespace=ns, labels={w.LABEL_WORKFLOW_RUN: "fan-1"}))

    eventually(lambda: len(steps()) == 4, what="four steps")

    def waiting() -> list[Any] | None:
        now = steps()
        held = [s for s in now if (s.status or {}).get("reason") == "ConcurrentRunsQuota"]
        running = [s for s in now if (s.status or {}).get("jobName")]
        return held if len(running) == 1 and len(held) == 3 else None

    held = eventually(waiting, what="one step running, the three others waiting for the owner's slot")
    assert all(s.status["phase"] == "Pending" for s in held)
    # The slot stays taken: no second step starts while the first runs.
    assert len([s for s in steps() if (s.status or {}).get("jobName")]) == 1
    assert "concurrent_runs: 1" in held[0].status["message"]


def test_the_quotas_wait_wake_and_end_across_a_restart(
    plane: ControlPlane, client: Client, ns: str, op: OperatorProcess
) -> None:
    created(create_as(plane, API_SA, ns, agent("daily", owner="dora")))
    created(create_as(plane, API_SA, ns, run("d1", "daily", owner="dora")))
    eventually(lambda: started(client, ns, "d1"), what="d1 started")
    created(create_as(plane, API_SA, ns, run("d2", "daily", owner="dora")))
    wait_status(client, ns, "d2", phase="Pending", reason="ConcurrentRunsQuota")
    assert not started(client, ns, "d2")
    cancel(client, ns, "d1")
    eventually(lambda: started(client, ns, "d2"), timeout=10, what="d2 started after d1 ended")
    cancel(client, ns, "d2")
    created(create_as(plane, API_SA, ns, run("d3", "daily", owner="dora")))
    eventually(lambda: started(client, ns, "d3"), what="d3 started")
    cancel(client, ns, "d3")
    book = client.get(ConfigMap, book_name("dora"), namespace=STATE_NS)  # out of the tenants' namespace
    assert len((book.data or {})["admitted"].split()) == 3
    with pytest.raises(ApiError):
        client.get(ConfigMap, book_name("dora"), namespace=ns)
    created(create_as(plane, API_SA, ns, run("d4", "daily", owner="dora")))
    st = wait_status(client, ns, "d4", phase="Failed", reason="RunsPerDayQuota")
    assert "runs_per_day: 3" in st["message"] and jobs_of(client, ns, "d4") == []
    # The day's count is the book, not the operator's memory.
    op.restart()
    created_after_restart(plane, API_SA, ns, run("d5", "daily", owner="dora"))
    wait_status(client, ns, "d5", phase="Failed", reason="RunsPerDayQuota")


def test_backfill_runs_carry_the_owner_and_wait_their_turn(
    plane: ControlPlane, client: Client, ns: str
) -> None:
    schedule = {
        "cron": "0 * * * *",
        "concurrencyPolicy": "Allow",  # else the schedule's own rule skips them before the gate
        "backfill": {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00:00Z"},
    }
    created(create_as(plane, API_SA, ns, agent("filler", owner="fay", schedule=schedule)))

    def runs() -> list[Any]:
        return [e for e in client.list(Execution, namespace=ns) if e.spec["agentRef"]["name"] == "filler"]

    eventually(lambda: len(runs()) == 3, what="three backfill runs")
    assert {e.metadata.labels.get(c.LABEL_OWNER) for e in runs()} == {"fay"}
    eventually(
        lambda: (
            sorted((e.status or {}).get("reason", "") for e in runs() if not (e.status or {}).get("jobName"))
            == ["ConcurrentRunsQuota"] * 2
        ),
        what="one backfill run started, two waiting for the owner's slot",
    )


def test_a_policy_tightened_later_refuses_the_next_run(
    plane: ControlPlane, client: Client, ns: str, op: OperatorProcess
) -> None:
    created(create_as(plane, API_SA, ns, agent("slow", owner="pat", timeoutSeconds=1200)))
    policy = op.workdir / "policy.json"
    policy.write_text('{"maxTimeoutSeconds": 600}')
    op.restart()
    try:
        created_after_restart(plane, API_SA, ns, run("slow-1", "slow", owner="pat"))
        st = wait_status(client, ns, "slow-1", phase="Failed", reason="PolicyViolation")
        assert "spec.timeoutSeconds" in st["message"] and jobs_of(client, ns, "slow-1") == []
    finally:
        policy.write_text("{}")
        op.restart()
