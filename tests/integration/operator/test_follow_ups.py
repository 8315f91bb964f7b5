"""Follow-ups on a real API server and Job controller: an Execution with spec.parentRef (as kubectl
creates it) passes the operator's run gate only for a finished run of the same Agent and owner with
a checkpoint journal, and its Job gets the parent's name and journal keys; every other parent fails
the child FollowUpRefused naming the field (docs/runs.md, "Follow-ups"). Journals in the gateway go
with the runs the operator prunes and with a deleted Agent's runs.

Own control plane, one governed operator and a real gateway (tests/fixtures/governed.py), the
kubelet played through pods/status.
"""
# ruff: noqa: F811  (fixtures/governed.py's fixtures, imported: a governed plane, gateway and operator)

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import pytest
from lightkube import ApiError, Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from agentry_common import checkpoints as cp
from agentry_common import constants as c
from agentry_common.naming import token_secret_name
from agentry_common.tokens import verify
from agentry_gateway.checkpoints.store import RunRef
from agentry_operator.kube import Agent, Execution
from tests.fixtures.governed import gateway, governed_operator, kube_client, plane  # noqa: F401
from tests.fixtures.helpers import eventually, job_pod, play_kubelet
from tests.fixtures.servers import make_namespace
from tests.integration.operator.test_governance import (
    KEY,
    KEYRING,
    USER,
    Gateway,
    make_agent,
    make_execution,
    the_job,
    wait_status,
)

pytestmark = pytest.mark.integration

CHECKPOINT = {"entries": 5, "resumes": 0, "interruptedCalls": 0, "lastAt": "2026-01-02T03:04:05Z"}


@pytest.fixture(scope="module")
def client(kube_client: Client) -> Client:
    return kube_client


@pytest.fixture
def ns(client: Client) -> str:
    name = make_namespace(client, "fu")
    make_agent(client, name, "news")
    return name


def finish(client: Client, ns: str, name: str, report: dict[str, Any]) -> dict[str, Any]:
    """Start a run of `news` and play its pod to a successful end with `report`; its status."""
    ex = make_execution(client, ns, name, "news", input="hello")
    job = the_job(client, ex)
    assert job.metadata is not None
    play_kubelet(client, job_pod(client, ns, job.metadata.name or ""), "Succeeded", 0, report)
    return wait_status(client, name, ns, "Succeeded", lambda s: s.get("phase") == "Succeeded")


def follow_up(client: Client, ns: str, name: str, parent: str, owner: str = USER) -> Any:
    meta = {"name": name, "namespace": ns, "labels": {c.LABEL_OWNER: owner}}
    spec = {"agentRef": {"name": "news"}, "input": "and for Friday?", "parentRef": {"name": parent}}
    return client.create(Execution.from_dict({"metadata": meta, "spec": spec}))


def test_a_follow_up_of_a_finished_run_gets_its_parents_name_and_journal_keys(
    client: Client, ns: str, gateway: Gateway
) -> None:
    parent = finish(client, ns, "first", {"summary": "done", "checkpoint": CHECKPOINT})
    assert parent["checkpoint"] == CHECKPOINT  # copied from the pod's report
    parent_uid = client.get(Execution, "first", namespace=ns).metadata.uid  # type: ignore[union-attr]

    child = follow_up(client, ns, "second", "first")
    job = the_job(client, child)
    assert job.metadata is not None and job.spec is not None
    env = {e.name: e for e in job.spec.template.spec.containers[0].env or []}  # type: ignore[union-attr]
    assert env[cp.ENV_PARENT_EXECUTION].value == "first"
    assert env[cp.ENV_CHECKPOINT_URL].value == gateway.url
    secret_name = token_secret_name(job.metadata.name or "")
    ref = env[cp.ENV_PARENT_STATE_KEYS].valueFrom.secretKeyRef  # type: ignore[union-attr]
    assert ref is not None
    assert (ref.name, ref.key, ref.optional) == (secret_name, cp.SECRET_PARENT_STATE_KEYS, True)

    data = client.get(Secret, secret_name, namespace=ns).data or {}
    keys = cp.parse_keys(base64.b64decode(data[cp.SECRET_PARENT_STATE_KEYS]).decode())
    assert keys == cp.parent_state_keys(KEYRING.keys.values(), ns, str(parent_uid))
    state_key = base64.b64decode(data["state-key"]).decode()
    assert state_key == cp.derive_state_key(KEY.encode(), ns, str(child.metadata.uid))
    claims = verify(base64.b64decode(data["token"]).decode(), KEYRING, expected="run")
    assert (claims.parent, claims.parent_uid) == ("first", parent_uid)
    labels = eventually(
        lambda: (client.get(Execution, "second", namespace=ns).metadata.labels or {}).get(c.LABEL_PARENT),  # type: ignore[union-attr]
        what="the parent label",
    )
    assert labels == "first"


def refused(client: Client, ns: str, name: str) -> str:
    st = wait_status(client, name, ns, "FollowUpRefused", lambda s: s.get("reason") == "FollowUpRefused")
    assert st["phase"] == "Failed" and "jobName" not in st
    assert not [
        j for j in client.list(Job, namespace=ns) if ((j.metadata and j.metadata.name) or "").startswith(name)
    ]
    return str(st["message"])


def test_follow_ups_of_runs_they_may_not_continue_fail_naming_the_field(client: Client, ns: str) -> None:
    finish(client, ns, "plain", {"summary": "done"})  # no journal
    make_agent(client, ns, "other")
    other = make_execution(client, ns, "other-run", "other")
    other_job = the_job(client, other).metadata.name or ""  # type: ignore[union-attr]
    play_kubelet(client, job_pod(client, ns, other_job), "Succeeded", 0, {"checkpoint": CHECKPOINT})
    wait_status(client, "other-run", ns, "Succeeded", lambda s: s.get("phase") == "Succeeded")
    running = make_execution(client, ns, "busy", "news")
    running_job = the_job(client, running).metadata.name or ""  # type: ignore[union-attr]
    play_kubelet(client, job_pod(client, ns, running_job), "Running")
    wait_status(client, "busy", ns, "Running", lambda s: s.get("phase") == "Running")
    # A finished run whose owner label an administrator changed since: another owner's run.
    finish(client, ns, "theirs", {"summary": "done", "checkpoint": CHECKPOINT})
    relabel = {"metadata": {"labels": {c.LABEL_OWNER: "u-other"}}}
    client.patch(Execution, "theirs", relabel, namespace=ns, patch_type=PatchType.MERGE)

    cases = {
        "to-ghost": ("ghost", "no Execution of that name"),
        "to-other": ("other-run", "of Agent 'other'"),
        "to-theirs": ("theirs", "another owner"),
        "to-busy": ("busy", "is Running"),
        "to-plain": ("plain", "no checkpoints"),
    }
    for child, (parent, _) in cases.items():
        follow_up(client, ns, child, parent)
    for child, (parent, why) in cases.items():
        message = refused(client, ns, child)
        assert message.startswith(f"spec.parentRef.name: '{parent}'") and why in message, message


def test_the_webhook_refuses_a_run_that_continues_itself(client: Client, ns: str) -> None:
    with pytest.raises(ApiError) as err:
        follow_up(client, ns, "loop", "loop")
    assert err.value.status.code == 422
    assert "spec.parentRef.name" in (err.value.status.message or "")


def test_journals_go_with_pruned_runs_and_with_their_agent(client: Client, ns: str, gateway: Gateway) -> None:
    store = gateway.app.state.gateway.checkpoints
    uids = {}
    for name in ("older", "newer"):
        finish(client, ns, name, {"summary": "done", "checkpoint": CHECKPOINT})
        uid = str(client.get(Execution, name, namespace=ns).metadata.uid)  # type: ignore[union-attr]
        entry = cp.sign_entry(cp.derive_state_key(KEY.encode(), ns, uid), "", 1, "user", {"text": name})
        run = RunRef(ns, uid, name, "news")
        asyncio.run_coroutine_threadsafe(store.append(run, [entry]), gateway.loop).result(10)
        uids[name] = run.doc_id
        time.sleep(1.05 - time.time() % 1)  # the next run in a later second: its times sort after
    assert uids["older"] in store.journals and uids["newer"] in store.journals

    # History limits prune the older run: its journal goes, the newer one's stays.
    limits = {"spec": {"historyLimits": {"succeeded": 1}}}
    client.patch(Agent, "news", limits, namespace=ns, patch_type=PatchType.MERGE)
    eventually(lambda: uids["older"] not in store.journals, what="the pruned run's journal gone")
    assert uids["newer"] in store.journals
    # The Agent deleted: its runs' journals go with it.
    client.delete(Agent, "news", namespace=ns)
    eventually(lambda: uids["newer"] not in store.journals, what="the deleted Agent's journals gone")
