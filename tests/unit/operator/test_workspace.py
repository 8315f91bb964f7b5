"""A kept workspace (docs/runs.md, "A kept workspace"): the Agent's claim, the run pod's volume, and
the run gate's rule that one run of the Agent at a time uses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lightkube.models.core_v1 import PodStatus
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from agentry_common import constants as c
from agentry_common.conditions import Reason
from agentry_common.models import AgentSpec, Phase
from agentry_common.workspace import ENV_WORKSPACE_LIMIT, claim_name, size_bytes
from agentry_operator.builders.job import build_job
from agentry_operator.builders.run_gate import workspace_held
from agentry_operator.builders.workspace import build_claim, kept_claim
from agentry_operator.handlers.state import State
from agentry_operator.handlers.workspace import held_for_workspace
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit


def agent(workspace: dict[str, Any] | None = None, uid: str | None = "uid-news") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "news", "namespace": "ns"}
    if uid:
        meta["uid"] = uid
    spec: dict[str, Any] = {"instructions": "x", "model": {"name": "m"}}
    if workspace is not None:
        spec["workspace"] = workspace
    return {"apiVersion": c.API_VERSION, "kind": "Agent", "metadata": meta, "spec": spec}


def run(name: str, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": "Execution",
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"},
        "spec": {"agentRef": {"name": "news"}, "trigger": "Manual"},
        "status": status,
    }


KEPT = agent({"persistent": True, "size": "2Gi"})


def spec_of(body: dict[str, Any]) -> AgentSpec:
    return AgentSpec.model_validate(body["spec"])


# -- the claim and the pod ------------------------------------------------------------------------


def test_the_claim_is_the_agents_own_of_its_size_and_class() -> None:
    claim: dict[str, Any] = build_claim(KEPT["metadata"], spec_of(KEPT), Settings())
    meta = claim["metadata"]
    assert meta["name"] == claim_name("news", "uid-news") == kept_claim(KEPT["metadata"], spec_of(KEPT))
    assert meta["name"].startswith("agentry-ws-news-") and len(meta["name"]) <= 63
    assert meta["labels"][c.LABEL_AGENT] == "news" and meta["labels"][c.LABEL_COMPONENT] == "workspace"
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Agent",
        "news",
        "uid-news",
        True,
    )
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    assert "storageClassName" not in claim["spec"]  # the cluster's default StorageClass


def test_the_agents_storage_class_wins_over_the_installations() -> None:
    installed = Settings(workspace_storage_class="standard-rwo")
    claim: dict[str, Any] = build_claim(KEPT["metadata"], spec_of(KEPT), installed)
    assert claim["spec"]["storageClassName"] == "standard-rwo"
    own = agent({"persistent": True, "storageClassName": "premium-rwo"})
    theirs: dict[str, Any] = build_claim(own["metadata"], spec_of(own), installed)
    assert theirs["spec"]["storageClassName"] == "premium-rwo"


def test_a_recreated_agent_gets_a_new_claim_and_long_names_fit() -> None:
    assert claim_name("news", "uid-1") != claim_name("news", "uid-2")
    assert len(claim_name("n" * 253, "uid")) == 63


def test_a_run_mounts_the_claim_and_stays_restricted() -> None:
    job = build_job(run("r1"), KEPT, "corr", Settings())
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["workspace"] == {
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": claim_name("news", "uid-news")},
    }
    assert "emptyDir" in volumes["tmp"]
    security = pod["securityContext"]
    assert security["fsGroup"] == security["runAsUser"] == 10001 and security["runAsNonRoot"] is True
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"
    container = pod["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "workspace", "mountPath": c.WORKSPACE_DIR} in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[ENV_WORKSPACE_LIMIT] == str(2 * 1024**3)


@pytest.mark.parametrize(
    "body", [agent(), agent({"persistent": False, "size": "5Gi"}), agent({"persistent": True}, uid=None)]
)
def test_without_a_kept_workspace_a_run_gets_an_empty_dir(body: dict[str, Any]) -> None:
    pod = build_job(run("r1"), body, "corr", Settings(workspace_size_limit="3Gi"))["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["workspace"] == {"name": "workspace", "emptyDir": {"sizeLimit": "3Gi"}}
    assert "fsGroupChangePolicy" not in pod["securityContext"]
    assert ENV_WORKSPACE_LIMIT not in {e["name"] for e in pod["containers"][0]["env"]}


def test_sizes() -> None:
    assert size_bytes("512Mi") == 512 * 1024**2 and size_bytes("1Gi") == 1024**3
    with pytest.raises(ValueError, match=r"spec\.workspace\.size"):
        size_bytes("1G")


# -- one run at a time ----------------------------------------------------------------------------


def test_the_rule() -> None:
    assert workspace_held("news", []) is None
    held = workspace_held("news", ["r2", "r1"])
    assert held is not None and held.phase == Phase.PENDING and held.reason == Reason.WORKSPACE_BUSY
    assert "run r1, r2" in held.message and "'news'" in held.message


class Pods:
    """A client whose only call is listing the Agent's pods (as the gate does), answering `pods`."""

    def __init__(self, pods: list[tuple[str, str]] | None = None, delay: float = 0.0) -> None:
        self.pods = pods or []
        self.delay = delay
        self.asked: list[dict[str, Any]] = []

    async def list(self, res: Any, namespace: str, labels: dict[str, str]) -> AsyncIterator[Pod]:
        self.asked.append({"namespace": namespace, "labels": labels})
        await asyncio.sleep(self.delay)
        for execution, phase in self.pods:
            meta = ObjectMeta(name=f"{execution}-pod", annotations={c.ANNOTATION_EXECUTION: execution})
            yield Pod(metadata=meta, status=PodStatus(phase=phase))


def state_with(*bodies: dict[str, Any]) -> State:
    state = State()
    for body in bodies:
        state.seen_execution(body)
    return state


async def held(client: Pods, state: State, body: dict[str, Any], target: dict[str, Any] = KEPT) -> Any:
    return await held_for_workspace(client, state, body["metadata"], target["metadata"], spec_of(target))  # type: ignore[arg-type]


async def test_a_started_run_holds_it_until_it_ends() -> None:
    holder, waiter = run("r1", phase="Running", jobName="r1-job"), run("r2")
    state = state_with(holder, waiter)
    found = await held(Pods(), state, waiter)
    assert found is not None and found.reason == Reason.WORKSPACE_BUSY and "run r1 " in found.message
    assert ("ns", "r2") in state.gate.workspaces.waiting[("ns", "news")]
    # A paused run (waiting for an approval) still holds it: its files are the run's.
    state.wrote_status(("ns", "r1"), {"phase": "WaitingApproval"})
    assert await held(Pods(), state, waiter) is not None
    # It ends: the waiting run is woken at once, and passes.
    state.wrote_status(("ns", "r1"), {"phase": "Succeeded"})
    assert ("ns", "news") not in state.gate.workspaces.waiting
    assert await held(Pods(), state, waiter) is None


async def test_pods_not_yet_gone_hold_it_and_the_runs_own_pods_do_not() -> None:
    state = state_with(run("r1", phase="Cancelled", jobName="r1-job"), run("r2"))
    client = Pods([("r1", "Running")])  # a cancelled run's pod still shutting down
    assert (await held(client, state, run("r2"))) is not None
    assert client.asked == [{"namespace": "ns", "labels": {c.LABEL_AGENT: "news"}}]
    assert await held(Pods([("r1", "Succeeded"), ("r1", "Failed")]), state, run("r2")) is None
    # A durable run's new pod (the same Execution) keeps using it.
    mine = run("r2", phase="Running", jobName="r2-job")
    assert await held(Pods([("r2", "Running")]), state_with(mine), mine) is None


async def test_two_runs_starting_together_never_both_pass() -> None:
    state = state_with(run("r1"), run("r2"))
    client = Pods(delay=0.01)  # both list the pods before either decides
    first, second = await asyncio.gather(held(client, state, run("r1")), held(client, state, run("r2")))
    assert sorted(x is None for x in (first, second)) == [False, True]
    # The one that passed is remembered until it ends; then the other passes.
    winner = "r1" if first is None else "r2"
    loser = "r2" if winner == "r1" else "r1"
    assert await held(client, state, run(loser)) is not None
    state.wrote_status(("ns", winner), {"phase": "Failed"})
    assert await held(client, state, run(loser)) is None


async def test_agents_without_a_kept_workspace_are_never_held() -> None:
    client = Pods([("r1", "Running")])
    state = state_with(run("r1", phase="Running", jobName="r1-job"))
    assert await held(client, state, run("r2"), agent()) is None
    assert client.asked == []  # no API call for them
