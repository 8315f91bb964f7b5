"""A kept workspace against a real control plane and the real operator (docs/runs.md, "A kept
workspace"): the Agent's claim, and one run of the Agent at a time using it, held across an operator
restart. The control plane has no node, so claims stay Pending and pods are played (play_kubelet); the
bound volume, files across runs and cleanup are the e2e tier's (tests/e2e/node/test_workspace.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import PersistentVolumeClaim

from agentry_common import constants as c
from agentry_common.workspace import claim_name
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from tests.fixtures.helpers import eventually, job_pod, play_kubelet
from tests.fixtures.operator import OperatorProcess, own_control_plane, start_operator
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

REPORT = {
    "stopReason": "end_turn",
    "summary": "done",
    "truncated": False,
    "usage": {"inputTokens": 3, "outputTokens": 2, "costUSD": "0.01", "model": "m", "turns": 1},
}
SPEC: dict[str, Any] = {"instructions": "Keep notes.", "model": {"name": "claude-sonnet-4-5"}}


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("ws-plane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane) as c_:
        yield c_


@pytest.fixture(scope="module")
def op(plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    workdir: Path = tmp_path_factory.mktemp("ws-operator")
    proc = start_operator(plane, workdir, AGENTRY_WORKSPACE_STORAGE_CLASS="installed-class")
    yield proc
    proc.proc.stop()


def make_agent(client: Client, ns: str, name: str, workspace: dict[str, Any] | None) -> dict[str, Any]:
    spec = {**SPEC, **({"workspace": workspace} if workspace is not None else {})}
    client.create(Agent.from_dict({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
    return dict(client.get(Agent, name, namespace=ns).to_dict())


def get_claim(client: Client, ns: str, name: str) -> PersistentVolumeClaim:
    return client.get(PersistentVolumeClaim, name, namespace=ns)


def make_run(client: Client, ns: str, name: str, agent: str) -> None:
    body = {"metadata": {"name": name, "namespace": ns}, "spec": {"agentRef": {"name": agent}}}
    client.create(Execution.from_dict(body))


def status(client: Client, ns: str, name: str) -> dict[str, Any]:
    return dict(client.get(Execution, name, namespace=ns).status or {})


def jobs_of(client: Client, ns: str, name: str) -> list[Job]:
    return list(client.list(Job, namespace=ns, labels={c.LABEL_EXECUTION: name}))


def finish(client: Client, ns: str, name: str) -> None:
    play_kubelet(client, job_pod(client, ns, status(client, ns, name)["jobName"]), "Succeeded", 0, REPORT)
    eventually(lambda: status(client, ns, name).get("phase") == "Succeeded", what=f"{name} Succeeded")


def test_the_agent_owns_its_claim_of_its_size_and_class(client: Client, op: OperatorProcess) -> None:
    ns = make_namespace(client, "ws")
    agent = make_agent(client, ns, "notes", {"persistent": True, "size": "64Mi", "storageClassName": "fast"})
    name = claim_name("notes", agent["metadata"]["uid"])
    claim = eventually(lambda: client.get(PersistentVolumeClaim, name, namespace=ns), what="the claim")
    assert claim.spec is not None and claim.metadata is not None
    assert claim.spec.storageClassName == "fast" and claim.spec.accessModes == ["ReadWriteOnce"]
    assert claim.spec.resources is not None and claim.spec.resources.requests == {"storage": "64Mi"}
    [owner] = claim.metadata.ownerReferences or []
    assert (owner.kind, owner.name, owner.uid) == ("Agent", "notes", agent["metadata"]["uid"])
    # No class on the Agent: the installation's; and an Agent without a kept workspace gets no claim.
    other = make_agent(client, ns, "other", {"persistent": True})
    other_claim = eventually(
        lambda: client.get(
            PersistentVolumeClaim, claim_name("other", other["metadata"]["uid"]), namespace=ns
        ),
        what="the other claim",
    )
    assert other_claim.spec is not None and other_claim.spec.storageClassName == "installed-class"
    make_agent(client, ns, "plain", None)
    make_run(client, ns, "plain-1", "plain")
    eventually(lambda: status(client, ns, "plain-1").get("jobName"), what="plain-1 started")
    claims = {p.metadata.name for p in client.list(PersistentVolumeClaim, namespace=ns) if p.metadata}
    assert claims == {name, other_claim.metadata.name if other_claim.metadata else ""}
    [job] = jobs_of(client, ns, "plain-1")
    assert job.spec is not None and job.spec.template.spec is not None
    volumes = {v.name: v for v in job.spec.template.spec.volumes or []}
    assert volumes["workspace"].emptyDir is not None


def test_one_run_at_a_time_across_a_restart(plane: ControlPlane, client: Client, op: OperatorProcess) -> None:
    ns = make_namespace(client, "ws")
    agent = make_agent(client, ns, "desk", {"persistent": True, "size": "64Mi"})
    make_run(client, ns, "desk-1", "desk")
    eventually(lambda: status(client, ns, "desk-1").get("jobName"), what="desk-1 started")
    [job] = jobs_of(client, ns, "desk-1")
    assert job.spec is not None and job.spec.template.spec is not None
    volumes = {v.name: v for v in job.spec.template.spec.volumes or []}
    claim = volumes["workspace"].persistentVolumeClaim
    assert claim is not None and claim.claimName == claim_name("desk", agent["metadata"]["uid"])

    make_run(client, ns, "desk-2", "desk")
    held = eventually(
        lambda: (s := status(client, ns, "desk-2")).get("reason") == "WorkspaceBusy" and s, what="desk-2 held"
    )
    assert held["phase"] == "Pending" and "desk-1" in held["message"], held
    assert jobs_of(client, ns, "desk-2") == []

    # The operator restarts: "busy" is read from the cluster again, so desk-2 stays held.
    op.proc.kill()
    op.launch()
    op.wait_healthy()
    # A run created after the restart is held by the new operator, from what the cluster says.
    make_run(client, ns, "desk-3", "desk")
    held3 = eventually(
        lambda: (s := status(client, ns, "desk-3")).get("reason") == "WorkspaceBusy" and s, what="desk-3 held"
    )
    assert "desk-1" in held3["message"], held3
    assert jobs_of(client, ns, "desk-2") == [] and jobs_of(client, ns, "desk-3") == []

    # desk-1 ends: one of the waiting runs starts, with the same claim; the other waits for it.
    finish(client, ns, "desk-1")
    first = eventually(
        lambda: [r for r in ("desk-2", "desk-3") if status(client, ns, r).get("jobName")],
        what="a waiting run started after desk-1",
    )
    assert len(first) == 1, first
    second = "desk-3" if first == ["desk-2"] else "desk-2"
    [job2] = jobs_of(client, ns, first[0])
    assert job2.spec is not None and job2.spec.template.spec is not None
    volumes2 = {v.name: v for v in job2.spec.template.spec.volumes or []}
    claim2 = volumes2["workspace"].persistentVolumeClaim
    assert claim2 is not None and claim2.claimName == claim.claimName
    eventually(lambda: first[0] in status(client, ns, second).get("message", ""), what=f"{second} waits")
    assert jobs_of(client, ns, second) == []
    finish(client, ns, first[0])
    eventually(lambda: status(client, ns, second).get("jobName"), what=f"{second} started last")
