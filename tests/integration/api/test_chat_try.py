""" "Try it" from the chat designer, on real servers: the Firestore emulator, a real API server with
the operator, the API (uvicorn) and the scripted Messages API server of test_chat.py. Pod phases are
played through pods/status (no kubelet)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore
from lightkube import ApiError, Client
from websockets.sync.client import ClientConnection

from agentry_api.auth import owner_label
from agentry_common import constants as c
from agentry_common.resources import Agent, Execution
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually, patient, play_kubelet

from .helpers import REPORT, pod_of, request_approval
from .server import ApiServer, api_settings, serve
from .test_chat import API_KEY, DRAFT, FakeAnthropic, open_chat

pytestmark = pytest.mark.integration


@pytest.fixture
def scripted() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.http.shutdown()


@pytest.fixture
def try_api(
    firestore_project: str,
    namespace: str,
    kube: ControlPlane,
    crds: None,
    operator_ready: None,
    scripted: FakeAnthropic,
) -> Iterator[ApiServer]:
    settings = api_settings(
        firestore_project,
        namespace,
        str(kube.kubeconfig),
        anthropic_api_key=API_KEY,
        anthropic_base_url=scripted.url,
        guest_quota_concurrent_trials=2,
    )
    yield from serve(settings)


def until(ws: ClientConnection, want: Any, timeout: float = 40) -> dict[str, Any]:
    """The first frame for which `want(frame)` holds; fails on a deadline."""
    deadline = time.monotonic() + patient(timeout)
    seen = []
    while time.monotonic() < deadline:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if want(frame):
            return frame
        seen.append(frame)
    raise AssertionError(f"no such frame in {timeout} s; saw {seen}")


def part(ws: ClientConnection, kind: str, **fields: Any) -> dict[str, Any]:
    def matches(f: dict[str, Any]) -> bool:
        p = f.get("part") or {}
        return (
            f["type"] == "trial" and p.get("kind") == kind and all(p.get(k) == v for k, v in fields.items())
        )

    return until(ws, matches)


def drafted(ws: ClientConnection, llm: FakeAnthropic, draft: dict[str, Any]) -> dict[str, Any]:
    llm.answer("Here is a draft:\n```json\n" + json.dumps(draft) + "\n```")
    ws.send(json.dumps({"type": "message", "text": "an agent, please"}))
    return until(ws, lambda f: f["type"] == "draft")


def gone(kube_client: Client, res: Any, name: str, ns: str) -> bool:
    try:
        kube_client.get(res, name, namespace=ns)
    except ApiError as exc:
        return exc.status.code == 404
    return False


def test_a_tried_draft_runs_live_in_the_conversation(
    try_api: ApiServer, scripted: FakeAnthropic, kube_client: Client, namespace: str
) -> None:
    c_ = try_api.guest()
    with open_chat(try_api, c_.cookies) as ws:
        hello = until(ws, lambda f: f["type"] == "hello")
        ws.send(json.dumps({"type": "try", "input": "now"}))
        refused = until(ws, lambda f: f["type"] == "error")
        assert refused["code"] == "INVALID" and refused["errors"][0]["loc"] == ["draft"]
        assert drafted(ws, scripted, DRAFT)["valid"] is True
        ws.send(json.dumps({"type": "try", "input": "What happened last week?"}))
        started = part(ws, "started")
        name = started["execution"]
        assert started["part"]["agent"] == DRAFT["name"] and name.startswith(c.TRIAL_NAME_PREFIX)
        part(ws, "status", phase="Pending")

        # A real Execution of a hidden Agent, both labelled trial and owned by the person.
        db = firestore.Client(project=try_api.settings.google_cloud_project)
        run = db.collection("executions").document(name).get().to_dict()
        owner = owner_label(run["userId"])
        assert run["trial"] is True and run["conversation"] == hello["conversation"]
        ex = kube_client.get(Execution, name, namespace=namespace)
        assert ex.metadata.labels[c.LABEL_TRIAL] == "true" and ex.metadata.labels[c.LABEL_OWNER] == owner
        assert ex.spec["input"] == "What happened last week?"
        agent = kube_client.get(Agent, name, namespace=namespace)
        assert (
            agent.metadata.labels[c.LABEL_TRIAL] == "true" and agent.metadata.labels[c.LABEL_OWNER] == owner
        )
        assert "schedule" not in agent.spec and agent.spec["instructions"] == DRAFT["instructions"]

        pod = pod_of(kube_client, namespace, name)
        play_kubelet(kube_client, pod, "Running")
        part(ws, "status", phase="Running")
        play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
        part(ws, "status", phase="Succeeded")
        assert part(ws, "result")["part"]["summary"] == "All quiet."
        usage = part(ws, "usage")["part"]
        assert usage["inputTokens"] == 1200 and usage["costUSD"] == "0.0081"
        assert until(ws, lambda f: f.get("done") is True)["execution"] == name

    # Cleaned up: the hidden Agent (and with it the run's objects) is deleted; never the user's agent.
    eventually(lambda: gone(kube_client, Agent, name, namespace), 30, "the trial agent to be deleted")
    assert c_.get("/api/agents").json()["items"] == []
    assert c_.get(f"/api/executions/{name}").json()["phase"] == "Succeeded"  # a run of the user's

    # Stored with the conversation: a reload shows the trial and its parts.
    with open_chat(try_api, c_.cookies, f"?conversation={hello['conversation']}") as ws:
        again = until(ws, lambda f: f["type"] == "hello")
    (trial,) = again["trials"]
    kinds = [p["kind"] for p in trial["parts"]]
    assert trial["done"] is True and trial["execution"] == name and trial["after"] == 2
    assert kinds[0] == "started" and kinds[-2:] == ["result", "usage"] and "status" in kinds


def test_a_bad_draft_is_refused_and_trials_are_limited(
    try_api: ApiServer, scripted: FakeAnthropic, kube_client: Client, namespace: str
) -> None:
    c_ = try_api.guest()
    with open_chat(try_api, c_.cookies) as ws:
        until(ws, lambda f: f["type"] == "hello")
        bad = drafted(ws, scripted, {**DRAFT, "tools": ["teleport"]})
        assert bad["valid"] is False
        ws.send(json.dumps({"type": "try"}))
        refused = until(ws, lambda f: f["type"] == "error")
        assert refused["code"] == "INVALID" and any("tools" in map(str, e["loc"]) for e in refused["errors"])
        ws.send(json.dumps({"type": "try", "input": 5}))
        assert until(ws, lambda f: f["type"] == "error")["errors"][0]["loc"] == ["input"]

        assert drafted(ws, scripted, DRAFT)["valid"] is True
        names = []
        for _ in range(2):
            ws.send(json.dumps({"type": "try"}))
            names.append(part(ws, "started")["execution"])
        ws.send(json.dumps({"type": "try"}))
        over = until(ws, lambda f: f["type"] == "error")
        assert over["code"] == "OVER_QUOTA" and over["status"] == 429 and over["limit"] == "concurrent_trials"
        listed = kube_client.list(Execution, namespace=namespace, labels={c.LABEL_TRIAL: "true"})
        assert sorted(e.metadata.name for e in listed if e.metadata and e.metadata.name) == sorted(names)

        # One ends (failed): its slot is free again, and its hidden Agent is deleted.
        play_kubelet(kube_client, pod_of(kube_client, namespace, names[0]), "Failed", 1, "boom")
        part(ws, "status", phase="Failed")
        eventually(
            lambda: gone(kube_client, Agent, names[0], namespace), 30, "the failed trial's agent deleted"
        )
        ws.send(json.dumps({"type": "try"}))
        assert part(ws, "started")["execution"] not in names


def test_a_trial_asks_for_approval_in_the_chat_and_is_approved_there(
    try_api: ApiServer, scripted: FakeAnthropic, kube_client: Client, namespace: str
) -> None:
    c_ = try_api.guest()
    with open_chat(try_api, c_.cookies) as ws:
        until(ws, lambda f: f["type"] == "hello")
        assert drafted(ws, scripted, DRAFT)["valid"] is True
        ws.send(json.dumps({"type": "try", "input": "clean the cache"}))
        name = part(ws, "started")["execution"]
        request_approval(kube_client, namespace, name, "ap-trial-1")
        # The watcher announces the approval before the run's WaitingApproval view (services/runs.py).
        asked = part(ws, "approval", state="pending")["part"]
        part(ws, "status", phase="WaitingApproval")
        assert asked["id"] == "ap-trial-1" and asked["risk"] == "RED" and asked["url"] == "/approvals"
        ws.send(json.dumps({"type": "decide", "approval": "nobody's", "approved": True}))
        assert until(ws, lambda f: f["type"] == "error")["code"] == "DECISION_FAILED"
        ws.send(json.dumps({"type": "decide", "approval": "ap-trial-1", "approved": True, "reason": "fine"}))
        assert until(ws, lambda f: f["type"] == "decided")["state"] == "approved"
        assert part(ws, "approval", state="approved")["part"]["id"] == "ap-trial-1"

    def decided() -> Any:
        return kube_client.get(Execution, name, namespace=namespace).spec.get("approvals")

    [decision] = eventually(decided, 20, "the decision on the trial's Execution")
    assert decision["approved"] is True and decision["reason"] == "fine"


def test_a_trial_left_running_is_caught_up_after_a_reload(
    try_api: ApiServer, scripted: FakeAnthropic, kube_client: Client, namespace: str
) -> None:
    c_ = try_api.guest()
    with open_chat(try_api, c_.cookies) as ws:
        hello = until(ws, lambda f: f["type"] == "hello")
        assert drafted(ws, scripted, DRAFT)["valid"] is True
        ws.send(json.dumps({"type": "try"}))
        name = part(ws, "started")["execution"]
        part(ws, "status", phase="Pending")
    # The socket is gone; the run goes on and ends meanwhile.
    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    eventually(lambda: c_.get(f"/api/executions/{name}").json()["phase"] == "Succeeded", 30, "the run's end")
    assert not gone(kube_client, Agent, name, namespace)  # nobody finished it yet

    with open_chat(try_api, c_.cookies, f"?conversation={hello['conversation']}") as ws:
        (trial,) = until(ws, lambda f: f["type"] == "hello")["trials"]
        assert trial["done"] is False and trial["execution"] == name
        part(ws, "status", phase="Succeeded")  # caught up from the stored run
        assert part(ws, "result")["part"]["summary"] == "All quiet."
        assert until(ws, lambda f: f.get("done") is True)["execution"] == name
    eventually(lambda: gone(kube_client, Agent, name, namespace), 30, "the trial agent to be deleted")


@pytest.fixture
def one_run_api(
    firestore_project: str,
    namespace: str,
    kube: ControlPlane,
    crds: None,
    operator_ready: None,
    scripted: FakeAnthropic,
) -> Iterator[ApiServer]:
    settings = api_settings(
        firestore_project,
        namespace,
        str(kube.kubeconfig),
        anthropic_api_key=API_KEY,
        anthropic_base_url=scripted.url,
        guest_quota_concurrent_runs=1,
    )
    yield from serve(settings)


def test_a_trial_counts_as_one_of_the_users_runs(one_run_api: ApiServer, scripted: FakeAnthropic) -> None:
    c_ = one_run_api.guest()
    with open_chat(one_run_api, c_.cookies) as ws:
        until(ws, lambda f: f["type"] == "hello")
        assert drafted(ws, scripted, DRAFT)["valid"] is True
        ws.send(json.dumps({"type": "try"}))
        name = part(ws, "started")["execution"]
        ws.send(json.dumps({"type": "try"}))
        over = until(ws, lambda f: f["type"] == "error")
        assert over["code"] == "OVER_QUOTA" and over["limit"] == "concurrent_runs" and over["allowed"] == 1
    assert [e["id"] for e in c_.get("/api/executions").json()["items"]] == [name]
