"""Agents CRUD ↔ Agent CRs, runs → 202 → Execution → operator → status mirrored, cancel, logs."""

from __future__ import annotations

from typing import Any

import pytest
from lightkube import ApiError, Client

from agentry_api.cluster import Agent, Execution
from tests.fixtures.helpers import eventually, play_kubelet

from .helpers import AGENT, REPORT, create_agent, pod_of, run, wait_api_phase
from .server import ApiServer

pytestmark = pytest.mark.integration


def cr_or_none(kube_client: Client, res: Any, name: str, ns: str) -> Any:
    try:
        return kube_client.get(res, name, namespace=ns)
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise


def test_agent_crud_is_mirrored_to_the_agent_cr(api: ApiServer, kube_client: Client, namespace: str) -> None:
    c = api.guest()
    agent = create_agent(c)
    assert agent["sync"]["state"] == "Synced" and agent["source"] == "api" and agent["editable"]
    cr = kube_client.get(Agent, agent["id"], namespace=namespace)
    assert cr.spec["instructions"] == "Summarise the news."
    assert cr.metadata.labels["app.kubernetes.io/managed-by"] == "agentry-api"
    me = c.get("/api/me").json()["id"]
    assert cr.metadata.labels["agentry.dev/owner"] != me  # a hash, not the id
    assert [a["id"] for a in c.get("/api/agents").json()["items"]] == [agent["id"]]

    spec = {**AGENT["spec"], "instructions": "Summarise the sports news.", "retries": 2}
    r = c.put(f"/api/agents/{agent['id']}", json={"name": "Sports", "spec": spec})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Sports"
    cr = kube_client.get(Agent, agent["id"], namespace=namespace)
    assert cr.spec["instructions"] == "Summarise the sports news." and cr.spec["retries"] == 2

    # The operator reconciles it; its status reaches the API through the watcher.
    eventually(
        lambda: c.get(f"/api/agents/{agent['id']}").json()["status"]["ready"] == "True", what="Ready mirrored"
    )

    assert c.delete(f"/api/agents/{agent['id']}").status_code == 204
    assert cr_or_none(kube_client, Agent, agent["id"], namespace) is None
    assert c.get(f"/api/agents/{agent['id']}").status_code == 404
    assert c.get("/api/agents").json()["items"] == []


def test_invalid_agents_are_422_naming_the_field(api: ApiServer) -> None:
    c = api.guest()
    r = c.post("/api/agents", json={"name": "x", "spec": {"model": {"name": "m"}}})
    assert r.status_code == 422
    assert any(e["loc"][-1] == "instructions" for e in r.json()["detail"])
    r = c.post("/api/agents", json={**AGENT, "spec": {**AGENT["spec"], "budget": {"maxTurns": 0}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "maxTurns"
    # A rule only the API server knows (CEL: cron must have 5 fields) comes back as 422 too.
    bad_cron = {**AGENT["spec"], "schedule": {"cron": "every monday"}}
    r = c.post("/api/agents", json={**AGENT, "spec": bad_cron})
    assert r.status_code == 422, r.text
    assert "cron" in str(r.json()["detail"])
    # Policy: a model endpoint or Secret not on the allow-lists would leak the platform's key.
    r = c.post(
        "/api/agents",
        json={**AGENT, "spec": {**AGENT["spec"], "model": {"name": "m", "baseURL": "http://evil"}}},
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "spec", "model", "baseURL"]
    secret = [{"env": "X", "secretKeyRef": {"name": "someone-elses", "key": "k"}}]
    r = c.post("/api/agents", json={**AGENT, "spec": {**AGENT["spec"], "secrets": secret}})
    assert r.status_code == 422 and "someone-elses" in r.json()["detail"][0]["msg"]
    assert c.get("/api/agents").json()["items"] == []


def test_run_is_202_then_status_and_usage_are_mirrored(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)
    accepted = run(c, agent["id"], "today")
    name, correlation = accepted["execution"], accepted["correlationId"]
    assert accepted["status"] == "accepted" and accepted["url"] == f"/api/executions/{name}"
    ex = kube_client.get(Execution, name, namespace=namespace)
    assert ex.spec["correlationId"] == correlation and ex.spec["trigger"] == "API"
    assert ex.spec["input"] == "today"

    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Running")
    wait_api_phase(c, name, "Running")
    # The pod exists but no kubelet serves its log (empty): the API says so and shows the events.
    logs = c.get(f"/api/executions/{name}/logs")
    assert logs.status_code == 200, logs.text
    assert logs.json()["source"] == "events", str(logs.json())[:900]
    assert logs.json()["note"].startswith("the pod's log is empty")
    assert any("Running" in line for line in logs.json()["lines"])
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    done = wait_api_phase(c, name, "Succeeded")
    assert done["correlationId"] == correlation
    assert done["usage"]["inputTokens"] == 1200 and done["usage"]["costUSD"] == "0.0081"
    assert done["result"]["summary"] == "All quiet."
    assert done["agentId"] == agent["id"] and done["trigger"] == "API"

    usage = c.get("/api/usage", params={"window": "24h"}).json()
    assert usage["executions"] == 1 and usage["costUSD"] == "0.0081" and usage["inputTokens"] == 1200
    assert usage["agents"][0]["agentId"] == agent["id"] and usage["agents"][0]["succeeded"] == 1
    assert c.get("/api/usage", params={"window": "1y"}).status_code == 422

    logs = c.get(f"/api/executions/{name}/logs").json()
    assert logs["source"] in ("events", "pod")
    if logs["source"] == "events":  # no kubelet: the pod has no log, stored events stand in
        assert any("Succeeded" in line for line in logs["lines"]), logs
        assert logs["note"]
    # Finished: cancel is refused with a reason.
    r = c.post(f"/api/executions/{name}/cancel")
    assert r.status_code == 409 and "already finished" in r.json()["detail"]


def test_executions_list_filters_and_paginates_with_a_cursor(api: ApiServer) -> None:
    c = api.guest()
    a, b = create_agent(c), create_agent(c, name="Other")
    names = [run(c, a["id"])["execution"] for _ in range(3)] + [run(c, b["id"])["execution"]]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "agent": a["id"]}
        if cursor:
            params["cursor"] = cursor
        page = c.get("/api/executions", params=params).json()
        seen += [e["id"] for e in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(names[:3]) and len(seen) == 3
    everything = c.get("/api/executions", params={"limit": 100}).json()["items"]
    assert {e["id"] for e in everything} == set(names)
    created = [e["createdAt"] for e in everything]
    assert created == sorted(created, reverse=True)
    assert c.get("/api/executions", params={"cursor": "garbage!"}).status_code == 422
    assert c.get("/api/executions", params={"phase": "Bogus"}).status_code == 422


def test_cancel_is_202_and_the_run_ends_cancelled(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)
    name = run(c, agent["id"])["execution"]
    pod_of(kube_client, namespace, name)
    r = c.post(f"/api/executions/{name}/cancel")
    assert r.status_code == 202 and r.json()["id"] == name
    assert kube_client.get(Execution, name, namespace=namespace).spec["cancel"] is True
    wait_api_phase(c, name, "Cancelled")


def test_logs_without_a_pod_fall_back_to_events(api: ApiServer) -> None:
    c = api.guest()
    agent = create_agent(c)
    name = run(c, agent["id"])["execution"]
    logs = c.get(f"/api/executions/{name}/logs")
    assert logs.status_code == 200
    body = logs.json()
    assert body["source"] == "events" and body["note"]
    assert any("accepted" in line for line in body["lines"])


def test_health_ready_metrics_and_docs(api: ApiServer) -> None:
    c = api.client()
    assert c.get("/healthz").json() == {"status": "ok"}
    ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["firestore"] == "ok"
    assert ready.json()["checks"]["kubernetes"] == "ok"
    assert c.get("/metrics").status_code == 404  # on a port of its own (test_internals.py)
    assert c.get("/docs").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    assert "/api/agents/{agent_id}/runs" in paths and "/api/events" in paths
    # Unauthenticated API calls are 401 with a reason, not a new user.
    r = c.get("/api/agents")
    assert r.status_code == 401 and "not signed in" in r.json()["detail"]
