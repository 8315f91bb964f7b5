"""GET /api/events: snapshot then reports with ids, per-user, heartbeats, Last-Event-ID replay, bound."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from lightkube import Client

from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually, patient, play_kubelet

from .helpers import REPORT, SseReader, create_agent, pod_of, run, wait_api_phase
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration


def test_snapshot_then_own_reports_with_increasing_ids(api: ApiServer) -> None:
    alice, bob = api.guest(), api.guest()
    old = create_agent(alice, name="Before")
    a, b = SseReader(alice), SseReader(bob)
    try:
        snap = a.next()
        assert snap["event"] == "snapshot"
        assert [x["id"] for x in snap["data"]["agents"]] == [old["id"]]
        assert int(snap["id"]) == snap["data"]["seq"] >= 1
        assert b.next()["data"]["agents"] == []

        mine = create_agent(alice, name="Mine")
        theirs = create_agent(bob, name="Theirs")
        got = a.until(lambda e: e["data"].get("agent", {}).get("id") == mine["id"])
        ids = [int(snap["id"])] + [int(e["id"]) for e in got]
        assert all(e["event"] == "report" for e in got) and ids == sorted(set(ids)), ids
        assert ids[1] == ids[0] + 1, "reports continue right after the snapshot's id"
        b.until(lambda e: e["data"].get("agent", {}).get("id") == theirs["id"])
        # Bob's agent never reaches Alice's stream: drain what she has and look.
        time.sleep(1)
        while not a.queue.empty():
            got.append(a.next())
        assert all(e["data"].get("agent", {}).get("id") != theirs["id"] for e in got)
        # Heartbeats are comments.
        deadline = time.monotonic() + patient(5)
        while a.comments == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert a.comments > 0, "no heartbeat within 5 s (heartbeat every 1 s in tests)"
    finally:
        a.close()
        b.close()


def test_resume_with_last_event_id_after_a_dropped_connection_loses_nothing(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)
    stream = SseReader(c)
    snap = stream.next()
    accepted = run(c, agent["id"], "first")
    got = stream.until(lambda e: e["data"].get("action") == "accepted")
    last_id = got[-1]["id"]
    stream.close()  # the connection drops

    # While disconnected: another run, driven to the end.
    second = run(c, agent["id"], "second")
    pod = pod_of(kube_client, namespace, second["execution"])
    play_kubelet(kube_client, pod, "Running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    wait_api_phase(c, second["execution"], "Succeeded")
    # Every report is stored before the execution document changes, so this count includes them all.
    all_events = _last_seq(api)
    assert all_events > int(last_id) + 3

    resumed = SseReader(c, last_event_id=last_id)
    try:
        replay = resumed.until(lambda e: int(e["id"]) >= all_events)
        assert all(e["event"] == "report" for e in replay), "a resumed stream has no snapshot"
        ids = [int(e["id"]) for e in replay]
        assert ids == list(range(int(last_id) + 1, all_events + 1)), "gap or duplicate in the replay"
        second_events = [e["data"] for e in replay if e["data"].get("execution") == second["execution"]]
        phases = [e["phase"] for e in second_events]
        assert phases[0] == "Pending" and phases[-1] == "Succeeded" and "Running" in phases
        # The correlation id of the request is on every report about the run.
        assert {e["correlationId"] for e in second_events} == {second["correlationId"]}
        assert accepted["correlationId"] != second["correlationId"]
        # Live events keep coming on the resumed stream.
        run(c, agent["id"])
        live = resumed.next()
        assert int(live["id"]) == all_events + 1
    finally:
        resumed.close()
    assert int(snap["id"]) < int(last_id)


def _last_seq(api: ApiServer) -> int:
    from google.cloud import firestore

    db = firestore.Client(project=api.settings.google_cloud_project)
    return max((int(d.to_dict()["seq"]) for d in db.collection("events").stream()), default=0)


@pytest.fixture
def bounded_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[ApiServer]:
    server = start_api(
        api_settings(firestore_project, namespace, str(kube.kubeconfig), sse_max_connections=2, watch=False)
    )
    yield server
    server.stop()


def test_connections_past_the_bound_get_503(bounded_api: ApiServer) -> None:
    c = bounded_api.guest()
    first, second = SseReader(c), SseReader(c)
    assert first.next()["event"] == second.next()["event"] == "snapshot"
    third = SseReader(c)
    try:
        assert third.status == 503
        assert third.response.headers["retry-after"] == "5"
        third.response.read()
        assert "too many open event streams" in third.response.json()["detail"]
    finally:
        third.close()
    first.close()
    eventually(lambda: bounded_api.state.sse_open < 2, what="the closed stream released")
    fourth = SseReader(c)
    try:
        assert fourth.status == 200 and fourth.next()["event"] == "snapshot"
    finally:
        fourth.close()
        second.close()
    # Unauthenticated: 401, not a stream.
    assert bounded_api.client().get("/api/events").status_code == 401
