"""/api/workflows and /api/workflow-runs on the real API server, control plane and operator: create,
graphs refused by the webhook (422 naming the step and field), another user's Agent refused, run now,
per-step progress as the operator runs the steps (pods completed through pods/status), the quota,
and another user seeing nothing."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from lightkube import ApiError, Client

from agentry_common.naming import job_name
from agentry_common.resources import Agent, Execution, Workflow, WorkflowRun
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually, job_pod, play_kubelet

from .helpers import AGENT, SseReader, create_agent
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration


def step(name: str, agent: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "agentRef": {"name": agent}, "dependsOn": list(deps), **extra}


def create(c: httpx.Client, *steps: dict[str, Any], expect: int = 201, **spec: Any) -> dict[str, Any]:
    r = c.post("/api/workflows", json={"name": "Brief", "spec": {"steps": list(steps), **spec}})
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


def finish(kube_client: Client, ns: str, execution: str, tokens: int, cost: str) -> None:
    ex = kube_client.get(Execution, execution, namespace=ns)
    assert ex.metadata is not None and ex.metadata.uid is not None
    pod = job_pod(kube_client, ns, job_name(execution, ex.metadata.uid))
    report = {
        "stopReason": "end_turn",
        "summary": f"result of {execution}",
        "usage": {"inputTokens": tokens, "outputTokens": 0, "costUSD": cost, "model": "claude-sonnet-4-5"},
    }
    play_kubelet(kube_client, pod, "Succeeded", 0, report)


def step_in(c: httpx.Client, run: str, name: str, phase: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = c.get(f"/api/workflow-runs/{run}").json()
        found: dict[str, Any] = {s["name"]: s for s in body["steps"]}[name]
        started = found["execution"] or phase != "Running"  # the Execution's name follows its phase
        return found if found["phase"] == phase and started else None

    result: dict[str, Any] = eventually(check, 40, f"step {name} {phase} in the API")
    return result


def test_a_workflow_runs_and_its_steps_progress_in_the_api(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c = api.guest()
    agent = create_agent(c)["id"]
    wf = create(
        c,
        step("fetch", agent, input="news on {{ params.topic }}"),
        step("sum", agent, "fetch", input="{{ steps.fetch.summary }}"),
        parameters=[{"name": "topic", "default": "chips"}],
    )
    cr = kube_client.get(Workflow, wf["id"], namespace=namespace)
    assert cr.metadata is not None and cr.metadata.labels is not None
    assert cr.metadata.labels["agentry.dev/owner"] != c.get("/api/me").json()["id"]  # a hash
    assert [w["id"] for w in c.get("/api/workflows").json()["items"]] == [wf["id"]]

    r = c.post(f"/api/workflows/{wf['id']}/runs", json={"parameters": {"topic": "memory"}})
    assert r.status_code == 201, r.text
    run = r.json()["name"]
    assert [s["phase"] for s in r.json()["steps"]] == ["Pending", "Pending"]
    assert kube_client.get(WorkflowRun, run, namespace=namespace).spec["parameters"] == {"topic": "memory"}

    fetch = step_in(c, run, "fetch", "Running")
    ex = kube_client.get(Execution, fetch["execution"], namespace=namespace)
    assert ex.spec["input"] == "news on memory"
    assert step_in(c, run, "sum", "Pending")["execution"] is None
    finish(kube_client, namespace, fetch["execution"], 1000, "0.0100")
    fetch = step_in(c, run, "fetch", "Succeeded")
    assert (
        fetch["tokens"] == 1000 and Decimal(fetch["costUSD"]) == Decimal("0.0100") and fetch["completionTime"]
    )

    summary = step_in(c, run, "sum", "Running")
    assert summary["dependsOn"] == ["fetch"] and summary["agent"] == agent
    finish(kube_client, namespace, summary["execution"], 500, "0.0050")
    done = eventually(
        lambda: (b := c.get(f"/api/workflow-runs/{run}").json())["phase"] == "Succeeded" and b, 40, "run done"
    )
    assert done["totals"]["tokens"] == 1500 and Decimal(done["totals"]["costUSD"]) == Decimal("0.0150")
    assert [s["phase"] for s in done["steps"]] == ["Succeeded", "Succeeded"]
    assert [x["name"] for x in c.get(f"/api/workflows/{wf['id']}/runs").json()["items"]] == [run]

    # Another user sees nothing of it, and cannot run, edit or delete it.
    other = api.guest()
    assert other.get("/api/workflows").json()["items"] == []
    for method, url in (
        ("GET", f"/api/workflows/{wf['id']}"),
        ("GET", f"/api/workflows/{wf['id']}/runs"),
        ("POST", f"/api/workflows/{wf['id']}/runs"),
        ("DELETE", f"/api/workflows/{wf['id']}"),
        ("GET", f"/api/workflow-runs/{run}"),
        ("GET", "/api/workflows/NOT_a-name"),  # not even a valid object name: 404, never 5xx
        ("GET", "/api/workflow-runs/" + "x" * 300),
    ):
        assert other.request(method, url).status_code == 404, (method, url)

    # Edit, then delete (its runs go with it).
    body = {"name": "Brief 2", "spec": {"steps": [step("only", agent)]}}
    r = c.put(f"/api/workflows/{wf['id']}", json=body)
    assert r.status_code == 200, r.text
    assert [s["name"] for s in kube_client.get(Workflow, wf["id"], namespace=namespace).spec["steps"]] == [
        "only"
    ]
    assert c.delete(f"/api/workflows/{wf['id']}").status_code == 204
    assert c.get(f"/api/workflows/{wf['id']}").status_code == 404
    with pytest.raises(ApiError):
        kube_client.get(Workflow, wf["id"], namespace=namespace)


def test_bad_graphs_foreign_agents_and_parameters_are_422_naming_the_field(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c, stranger = api.guest(), api.guest()
    mine, theirs = create_agent(c)["id"], create_agent(stranger)["id"]

    cycle = create(c, step("x", mine, "z"), step("y", mine, "x"), step("z", mine, "y"), expect=422)["detail"]
    assert cycle[0]["loc"][:4] == ["body", "spec", "steps", cycle[0]["loc"][3]]
    assert cycle[0]["loc"][4] == "dependsOn" and "cycle" in cycle[0]["msg"]
    tmpl = create(c, step("a", mine), step("b", mine, input="{{ params.nope }}"), expect=422)["detail"]
    assert tmpl[0]["loc"] == ["body", "spec", "steps", 1, "input"] and "nope" in tmpl[0]["msg"]

    foreign = create(c, step("a", mine), step("b", theirs, "a"), expect=422)["detail"]
    assert foreign == [
        {
            "loc": ["body", "spec", "steps", 1, "agentRef", "name"],
            "msg": foreign[0]["msg"],
            "type": "value_error",
        }
    ]
    assert "steps[1].agentRef" in foreign[0]["msg"]
    shape = create(c, step("A B", mine), expect=422)["detail"]
    assert shape[0]["loc"][-1] == "name"
    assert c.get("/api/workflows").json()["items"] == []
    assert list(kube_client.list(Workflow, namespace=namespace)) == []

    wf = create(c, step("a", mine, input="{{ params.must }}"), parameters=[{"name": "must"}])
    r = c.post(f"/api/workflows/{wf['id']}/runs", json={"parameters": {"must": "1", "other": "2"}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "parameters", "other"], r.text
    r = c.post(f"/api/workflows/{wf['id']}/runs", json={})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "parameters", "must"], r.text
    assert list(kube_client.list(WorkflowRun, namespace=namespace)) == []


def test_a_scheduled_workflow_shows_its_upcoming_runs(api: ApiServer) -> None:
    c = api.guest()
    agent = create_agent(c)["id"]
    schedule = {"cron": "30 7 * * 1-5", "timeZone": "Asia/Seoul"}
    wf = create(c, step("a", agent), schedule=schedule)

    def upcoming() -> list[str] | None:
        runs: list[str] = c.get(f"/api/workflows/{wf['id']}").json()["status"].get("upcomingRuns") or []
        return runs or None

    runs = eventually(upcoming, 40, "upcoming runs in the API")
    assert all(r.endswith(("22:30:00Z", "22:30:00.000000Z")) for r in runs), runs  # 07:30 KST in UTC
    bad = create(c, step("a", agent), schedule={"cron": "CRON_TZ=UTC 0 7 * * *"}, expect=422)["detail"]
    assert bad[0]["loc"][:4] == ["body", "spec", "schedule", "cron"], bad


def test_the_workflow_quota(
    firestore_project: str, namespace: str, kube: ControlPlane, operator_ready: None
) -> None:
    settings = api_settings(
        firestore_project,
        namespace,
        str(kube.kubeconfig),
        guest_quota_workflows=1,
        guest_quota_scheduled_agents=0,
    )
    server = start_api(settings)
    try:
        c = server.guest()
        agent = create_agent(c)["id"]
        create(c, step("a", agent))
        r = c.post("/api/workflows", json={"name": "Second", "spec": {"steps": [step("a", agent)]}})
        assert r.status_code == 429 and r.json()["limit"] == "workflows" and r.json()["allowed"] == 1
        assert len(c.get("/api/workflows").json()["items"]) == 1
        # A schedule counts against `scheduled_agents` (0 for these guests), on an edit too.
        wf = c.get("/api/workflows").json()["items"][0]
        scheduled = {"name": "First", "spec": {**wf["spec"], "schedule": {"cron": "0 7 * * *"}}}
        r = c.put(f"/api/workflows/{wf['id']}", json=scheduled)
        assert r.status_code == 429 and r.json()["limit"] == "scheduled_agents", r.text
        other = server.guest()  # the quota is per user
        create(other, step("a", create_agent(other)["id"]))
    finally:
        server.stop()


def test_runs_by_the_schedule_or_kubectl_are_the_workflow_owners(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    """The operator's scheduled runs carry the Workflow's owner label (the run gate counts their steps
    for that owner). A Workflow made with kubectl is the import owner's (the admin token's user), as
    its Agents are."""
    c = api.guest()
    agent = create_agent(c)["id"]
    wf = create(c, step("a", agent))
    owner = kube_client.get(Workflow, wf["id"], namespace=namespace).metadata.labels["agentry.dev/owner"]
    scheduled = {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {
            "name": f"{wf['id']}-1767225600"[:40],
            "labels": {
                "agentry.dev/workflow": wf["id"],
                "agentry.dev/trigger": "Schedule",
                "agentry.dev/owner": owner,
            },
        },
        "spec": {"workflowRef": {"name": wf["id"]}, "scheduledTime": "2026-01-01T00:00:00Z"},
    }
    created = kube_client.create(WorkflowRun.from_dict(scheduled), namespace=namespace)
    assert created.metadata is not None and created.metadata.name is not None
    run = created.metadata.name
    assert [r["name"] for r in c.get(f"/api/workflows/{wf['id']}/runs").json()["items"]] == [run]
    assert c.get(f"/api/workflow-runs/{run}").json()["workflow"] == wf["id"]
    other = api.guest()
    assert other.get(f"/api/workflow-runs/{run}").status_code == 404

    admin = api.client(headers={"Authorization": "Bearer admin-token-for-tests"})
    # Its steps name kubectl Agents: a Workflow without owner may not run a user's Agent.
    plain = {"metadata": {"name": "kubectl-agent", "namespace": namespace}, "spec": AGENT["spec"]}
    kube_client.create(Agent.from_dict(plain))
    made = {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": "by-kubectl"},
        "spec": {"steps": [step("a", "kubectl-agent")]},
    }
    kube_client.create(Workflow.from_dict(made), namespace=namespace)
    assert "by-kubectl" in [w["id"] for w in admin.get("/api/workflows").json()["items"]]
    assert admin.get("/api/workflows/by-kubectl").status_code == 200
    assert wf["id"] not in [w["id"] for w in admin.get("/api/workflows").json()["items"]]  # the guest's
    for who in (c, other):
        assert who.get("/api/workflows/by-kubectl").status_code == 404


def test_a_run_made_with_kubectl_without_labels_is_listed_with_the_workflows_runs(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    """As `kubectl create -f run.yaml` makes it: no labels but the owner's (the webhook asks a run for
    its Workflow's owner). It is listed (API and dashboard) beside the API's own run, by its
    workflowRef, for the Workflow's owner only."""
    c = api.guest()
    agent = create_agent(c)["id"]
    wf, sibling = create(c, step("a", agent)), create(c, step("a", agent))
    by_api = c.post(f"/api/workflows/{wf['id']}/runs", json={}).json()["name"]
    owner = {
        "agentry.dev/owner": kube_client.get(Workflow, wf["id"], namespace=namespace).metadata.labels[
            "agentry.dev/owner"
        ]
    }

    def made(name: str, workflow: str, labels: dict[str, str]) -> str:
        manifest = {
            "apiVersion": "agentry.dev/v1alpha1",
            "kind": "WorkflowRun",
            "metadata": {"name": name, "labels": labels},
            "spec": {"workflowRef": {"name": workflow}},
        }
        return str(kube_client.create(WorkflowRun.from_dict(manifest), namespace=namespace).metadata.name)

    by_kubectl = made(f"{wf['id']}-manual"[:40], wf["id"], owner)
    # A label naming this Workflow does not make another Workflow's run one of its runs.
    misfiled = made(f"{sibling['id']}-x"[:40], sibling["id"], {**owner, "agentry.dev/workflow": wf["id"]})

    listed = c.get(f"/api/workflows/{wf['id']}/runs").json()["items"]
    assert sorted(r["name"] for r in listed) == sorted([by_api, by_kubectl])
    assert {r["name"]: [s["name"] for s in r["steps"]] for r in listed}[by_kubectl] == ["a"]
    assert [r["name"] for r in c.get(f"/api/workflows/{sibling['id']}/runs").json()["items"]] == [misfiled]
    page = c.get(f"/workflows/{wf['id']}")
    assert page.status_code == 200 and f'data-run="{by_kubectl}"' in page.text and misfiled not in page.text
    assert c.get(f"/api/workflow-runs/{by_kubectl}").json()["workflow"] == wf["id"]

    other = api.guest()
    assert other.get(f"/api/workflows/{wf['id']}/runs").status_code == 404
    assert other.get(f"/api/workflow-runs/{by_kubectl}").status_code == 404
    # Deleting the Workflow deletes its runs, the one made with kubectl too.
    assert c.delete(f"/api/workflows/{wf['id']}").status_code == 204
    left = {r.metadata.name for r in kube_client.list(WorkflowRun, namespace=namespace) if r.metadata}
    assert by_kubectl not in left and by_api not in left and misfiled in left


def test_backfill_starts_each_past_fire_time_once_and_refuses_bad_ranges(api: ApiServer) -> None:
    c = api.guest()
    agent = create_agent(c)["id"]
    wf = create(c, step("a", agent), schedule={"cron": "30 7 * * 1-5", "timeZone": "Asia/Seoul"})
    url = f"/api/workflows/{wf['id']}/backfill"
    r = c.post(url, json={"start": "2026-01-01T09:00:00+09:00", "end": "2026-01-07T09:00:00+09:00"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["schedule"]["backfill"] == {
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-07T00:00:00Z",
    }

    def runs() -> list[str] | None:
        items = c.get(f"/api/workflows/{wf['id']}/runs").json()["items"]
        return sorted(i["name"] for i in items) if len(items) == 4 else None

    names = eventually(runs, 60, "the backfill's runs in the API")  # scheduled runs: the owner's
    assert all(n.startswith(f"{wf['id']}-") for n in names), names

    for body, field in (
        ({"start": "2026-01-07T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "end must not be before start"),
        ({"start": "2026-01-01T00:00:00", "end": "2026-01-02T00:00:00Z"}, "timezone"),
        ({"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}, "covers more than 10 runs"),
    ):
        r = c.post(url, json=body)
        assert r.status_code == 422 and field in r.text, r.text
    plain = create(c, step("a", agent))
    r = c.post(
        f"/api/workflows/{plain['id']}/backfill",
        json={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"},
    )
    assert r.status_code == 422 and "has no schedule" in r.text, r.text
    assert (
        api.guest()
        .post(url, json={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"})
        .status_code
        == 404
    )


def test_run_progress_reaches_the_owners_event_stream_and_no_one_elses(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    c, other = api.guest(), api.guest()
    agent = create_agent(c)["id"]
    wf = create(c, step("fetch", agent, outputs=["headline"]), step("sum", agent, "fetch"))
    assert wf["spec"]["steps"][0]["outputs"] == ["headline"]
    mine, theirs = SseReader(c), SseReader(other)
    try:
        mine.next(), theirs.next()  # the snapshots
        run = c.post(f"/api/workflows/{wf['id']}/runs", json={}).json()["name"]

        def about(phase: str) -> Any:
            def match(e: dict[str, Any]) -> bool:
                data = e["data"]
                steps = {s["name"]: s["phase"] for s in (data.get("run") or {}).get("steps") or []}
                return (
                    data.get("kind") == "workflowRun"
                    and data["workflowRun"] == run
                    and steps.get("fetch") == phase
                )

            return match

        mine.until(about("Running"))
        fetch = step_in(c, run, "fetch", "Running")["execution"]
        finish(kube_client, namespace, fetch, 100, "0.0010")
        [report] = [e for e in mine.until(about("Succeeded")) if about("Succeeded")(e)][-1:]
        assert report["data"]["run"]["steps"][0]["tokens"] == 100 and report["data"]["action"] == "status"
        time.sleep(1)
        seen = []
        while not theirs.queue.empty():
            seen.append(theirs.next())
        assert all(e["data"].get("kind") != "workflowRun" for e in seen), seen
    finally:
        mine.close()
        theirs.close()


def test_an_agents_backfill_from_the_api_starts_its_past_fire_times_once(api: ApiServer) -> None:
    c = api.guest()
    schedule = {"cron": "0 9 * * *", "timeZone": "Europe/Berlin"}
    spec = {"instructions": "Daily digest.", "model": {"name": "claude-sonnet-4-5"}, "schedule": schedule}
    agent = create_agent(c, spec=spec)["id"]
    url = f"/api/agents/{agent}/backfill"
    r = c.post(url, json={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T23:59:59Z"})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["schedule"]["backfill"]["end"] == "2026-01-02T23:59:59Z"

    def scheduled() -> list[str] | None:
        items = c.get("/api/executions", params={"agent": agent}).json()["items"]
        found = sorted(i["id"] for i in items if i["trigger"] == "Schedule")
        return found if len(found) == 2 else None  # 09:00 Berlin on Jan 1 and Jan 2

    eventually(scheduled, 60, "the agent's two backfilled runs in the API")
    wide = c.post(url, json={"start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"})
    assert wide.status_code == 422 and "backfill" in wide.text, wide.text
    plain = create_agent(c)["id"]
    r = c.post(
        f"/api/agents/{plain}/backfill", json={"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}
    )
    assert r.status_code == 422 and "has no schedule" in r.text
