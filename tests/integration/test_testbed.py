"""The test bed is real: Firestore emulator and a real API server with real controllers."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore
from lightkube import ApiError, Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Namespace, Pod
from lightkube.types import PatchType

from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.servers import make_namespace

pytestmark = pytest.mark.integration


def test_firestore_round_trip_query_and_transaction(firestore_project: str) -> None:
    db = firestore.Client(project=firestore_project)
    agents = db.collection("agents")
    agents.document("a1").set({"userId": "u1", "name": "weekly", "runs": 0})
    agents.document("a2").set({"userId": "u2", "name": "daily", "runs": 0})

    mine = [d.id for d in agents.where(filter=firestore.FieldFilter("userId", "==", "u1")).stream()]
    assert mine == ["a1"]

    @firestore.transactional
    def bump(tx: firestore.Transaction) -> int:
        ref = agents.document("a1")
        runs = int(ref.get(transaction=tx).get("runs")) + 1
        tx.update(ref, {"runs": runs})
        return runs

    assert bump(db.transaction()) == 1
    assert bump(db.transaction()) == 2
    assert agents.document("a1").get().get("runs") == 2
    assert agents.count().get()[0][0].value == 2


def test_firestore_projects_are_isolated(firestore_project: str) -> None:
    db = firestore.Client(project=firestore_project)
    assert list(db.collection("agents").stream()) == []


def test_custom_resource_crud_and_status_subresource(kube_client: Client, crds: None, namespace: str) -> None:
    Agent = create_namespaced_resource("agentry.dev", "v1alpha1", "Agent", "agents")
    created = kube_client.create(
        Agent.from_dict(
            {
                "metadata": {"name": "smoke", "namespace": namespace},
                "spec": {"instructions": "say hi", "model": {"name": "claude-sonnet-4-5"}},
            }
        )
    )
    # Defaults come from the schema.
    assert created.spec["model"]["provider"] == "anthropic"
    assert created.spec["timeoutSeconds"] == 1800

    # A status written through the main resource is ignored; through /status it sticks. Each write's
    # answer is read, not a later get: the session's operator, if it runs, owns the Agent's status
    # and may rewrite it at any time.
    merge = PatchType.MERGE
    ignored = kube_client.patch(
        Agent, "smoke", {"status": {"missedRuns": 7}}, namespace=namespace, patch_type=merge
    )
    assert (ignored.status or {}).get("missedRuns") != 7
    written = kube_client.patch(
        Agent.Status, "smoke", {"status": {"missedRuns": 7}}, namespace=namespace, patch_type=merge
    )
    assert written.status["missedRuns"] == 7
    assert written.metadata.generation == 1  # status writes do not bump generation


def _pod_spec() -> dict[str, Any]:
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "main",
                "image": "busybox",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
    }


def test_job_controller_runs_a_job_to_complete(kube_client: Client, namespace: str) -> None:
    kube_client.create(
        Job.from_dict(
            {
                "metadata": {"name": "smoke", "namespace": namespace},
                "spec": {"backoffLimit": 0, "template": {"spec": _pod_spec()}},
            }
        )
    )
    pods = eventually(
        lambda: list(kube_client.list(Pod, namespace=namespace, labels={"job-name": "smoke"})),
        what="the Job controller to create a Pod",
    )
    assert len(pods) == 1
    play_kubelet(kube_client, pods[0], "Succeeded", 0)

    def complete() -> bool:
        job = kube_client.get(Job, "smoke", namespace=namespace)
        conds = {c.type: c.status for c in (job.status.conditions or [])} if job.status else {}
        return conds.get("Complete") == "True"

    eventually(complete, what="the Job controller to mark the Job Complete")


def test_garbage_collector_removes_children(kube_client: Client, namespace: str) -> None:
    owner = kube_client.create(ConfigMap.from_dict({"metadata": {"name": "owner", "namespace": namespace}}))
    assert owner.metadata is not None
    kube_client.create(
        ConfigMap.from_dict(
            {
                "metadata": {
                    "name": "child",
                    "namespace": namespace,
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "ConfigMap",
                            "name": "owner",
                            "uid": owner.metadata.uid,
                        }
                    ],
                }
            }
        )
    )
    kube_client.delete(ConfigMap, "owner", namespace=namespace)

    def child_gone() -> bool:
        try:
            kube_client.get(ConfigMap, "child", namespace=namespace)
        except ApiError as exc:
            return exc.status.code == 404
        return False

    eventually(child_gone, what="the garbage collector to delete the child")


def test_pod_security_restricted_refuses_noncompliant_pod(kube_client: Client) -> None:
    ns = make_namespace(
        kube_client, "restricted", labels={"pod-security.kubernetes.io/enforce": "restricted"}
    )
    try:
        bad = {
            "metadata": {"name": "bad", "namespace": ns},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        }
        with pytest.raises(ApiError) as refused:
            kube_client.create(Pod.from_dict(bad))
        assert refused.value.status.code == 403
        assert "violates PodSecurity" in str(refused.value.status.message)
        assert "allowPrivilegeEscalation" in str(refused.value.status.message)

        good = {"metadata": {"name": "good", "namespace": ns}, "spec": _pod_spec()}
        kube_client.create(Pod.from_dict(good))
    finally:
        kube_client.delete(Namespace, ns)
