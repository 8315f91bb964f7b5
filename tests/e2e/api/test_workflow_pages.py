"""The workflow pages in headless Chromium: a diamond written in the Workflows page's form (a refused
graph shown on the form first), run now, and the run's graph drawn as SVG with each step's phase and
cost following the operator as step pods complete (screenshot: docs/screenshots/workflow-run.png); a
workflow written in the form's step rows, its page's graph of steps and dependencies, and the phases
of a chosen run on it, live (screenshot: docs/screenshots/workflow.png)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from lightkube import Client
from playwright.sync_api import Browser, Page, expect

from agentry_common.naming import job_name
from agentry_common.resources import Execution, Workflow, WorkflowRun
from tests.fixtures.helpers import eventually, job_pod, play_kubelet
from tests.integration.api.server import ApiServer

from .test_budget_pages import save
from .test_dashboard import browser

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

AGENT = {"name": "Reader", "spec": {"instructions": "Read.", "model": {"name": "claude-sonnet-4-5"}}}


def diamond(reader: str, writer: str) -> dict[str, Any]:
    return {
        "parallelism": 2,
        "parameters": [{"name": "topic", "default": "chips"}],
        "steps": [
            {"name": "plan", "agentRef": {"name": writer}, "input": "Plan a brief on {{ params.topic }}"},
            {"name": "news", "agentRef": {"name": reader}, "dependsOn": ["plan"]},
            {"name": "papers", "agentRef": {"name": reader}, "dependsOn": ["plan"]},
            {
                "name": "brief",
                "agentRef": {"name": writer},
                "dependsOn": ["news", "papers"],
                "when": "Completed",
            },
        ],
    }


def finish(kube_client: Client, ns: str, run: str, step: str, cost: str) -> None:
    """Complete the pod of a step's first attempt as a kubelet would."""

    def started() -> Any:
        status: Any = kube_client.get(WorkflowRun, run, namespace=ns).status or {}
        steps = {s["name"]: s for s in status.get("steps") or []}
        found: dict[str, Any] = steps.get(step) or {}
        return found.get("execution")

    name = eventually(started, 40, f"step {step} started")
    ex = kube_client.get(Execution, name, namespace=ns)
    assert ex.metadata is not None and ex.metadata.uid is not None
    pod = job_pod(kube_client, ns, job_name(name, ex.metadata.uid))
    report = {
        "stopReason": "end_turn",
        "summary": f"{step} done",
        "usage": {"inputTokens": 900, "outputTokens": 100, "costUSD": cost, "model": "claude-sonnet-4-5"},
    }
    play_kubelet(kube_client, pod, "Succeeded", 0, report)


def open_page(browser: Browser, url: str, *, ignore: str | None = None) -> tuple[Page, list[str]]:
    """A page in a new browser context, with the console errors (but `ignore`'s) and page errors it logs."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors: list[str] = []

    def console(m: Any) -> None:
        if m.type == "error" and (ignore is None or ignore not in m.text):
            errors.append(m.text)

    page.on("console", console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page, errors


def node(page: Page, step: str) -> Any:
    return page.locator(f'#run-graph g.node[data-step="{step}"]')


def test_write_run_and_watch_a_workflow_graph(
    browser: Browser, api: ApiServer, kube_client: Client, namespace: str
) -> None:
    # A guest session in the browser's cookie; the refusals the test provokes log 422s.
    page, errors = open_page(browser, api.url + "/workflows", ignore="422")
    expect(page.locator("#workflows tbody")).to_contain_text("No workflows yet")
    ids = []
    for name in ("Reader", "Writer"):
        r = page.request.post(api.url + "/api/agents", data={**AGENT, "name": name})
        assert r.status == 201, r.text()
        ids.append(r.json()["id"])
    page.reload()

    spec = diamond(*ids)
    cyclic = {**spec, "steps": [{**spec["steps"][0], "dependsOn": ["brief"]}, *spec["steps"][1:]]}
    page.fill("input[name=name]", "Morning brief")
    page.click("#advanced-spec summary")  # the whole spec as JSON
    page.fill("textarea[name=spec]", json.dumps(cyclic))
    page.click("#save-workflow")
    expect(page.locator('[data-for="spec"]')).to_contain_text("cycle")  # the webhook's 422, on the form
    expect(page.locator("#steps-editor tr.step.invalid")).not_to_have_count(0)  # and on a step's row
    page.fill("textarea[name=spec]", json.dumps(spec))
    page.click("#save-workflow")
    page.wait_for_url("**/workflows/morning-brief-*")
    page.fill("input[name=topic]", "memory chips")
    page.click("#run-workflow")
    page.wait_for_url("**/workflow-runs/morning-brief-*")
    run = page.url.rsplit("/", 1)[1]

    expect(page.locator("#run-graph g.node")).to_have_count(4)
    expect(node(page, "plan")).to_have_attribute("data-phase", "Running", timeout=30_000)
    expect(node(page, "brief")).to_have_attribute("data-phase", "Pending")
    finish(kube_client, namespace, run, "plan", "0.0120")
    finish(kube_client, namespace, run, "news", "0.0310")
    expect(node(page, "news")).to_have_attribute("data-phase", "Succeeded", timeout=30_000)
    expect(node(page, "papers")).to_have_attribute("data-phase", "Running", timeout=30_000)
    expect(node(page, "news")).to_contain_text("$0.031")
    # Redrawn from the event stream: a workflowRun report reached the page (no polling).
    expect(page.locator("body")).to_have_attribute("data-run-event-id", re.compile(r"^\d+$"))
    # Laid out by depth: plan | news, papers | brief, left to right; edges from each dependency.
    x = {s: node(page, s).bounding_box()["x"] for s in ("plan", "news", "papers", "brief")}
    assert x["plan"] < x["news"] == x["papers"] < x["brief"]
    expect(page.locator("#run-graph path.edge")).to_have_count(4)
    expect(page.locator('#run-steps tr[data-step="news"]')).to_contain_text("$0.031")
    expect(page.locator("#live")).to_have_text("live", timeout=30_000)
    save(page, "workflow-run.png")

    finish(kube_client, namespace, run, "papers", "0.0290")
    finish(kube_client, namespace, run, "brief", "0.0080")
    expect(page.locator("#run-phase")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#run-graph g.node.phase-Succeeded")).to_have_count(4)
    expect(page.locator("#run-cost")).to_have_text("0.08")

    # A scheduled workflow's page shows its next fire times (the operator's status.upcomingRuns).
    scheduled = {
        "steps": [spec["steps"][0]],
        "parameters": spec["parameters"],
        "schedule": {"cron": "30 7 * * 1-5", "timeZone": "Asia/Seoul"},
    }
    r = page.request.post(api.url + "/api/workflows", data={"name": "Weekday brief", "spec": scheduled})
    assert r.status == 201, r.text()
    wf = r.json()["id"]
    eventually(lambda: page.request.get(f"{api.url}/api/workflows/{wf}").json()["status"].get("upcomingRuns"))
    page.goto(f"{api.url}/workflows/{wf}")
    expect(page.locator("#workflow-schedule")).to_contain_text("Asia/Seoul")
    expect(page.locator("#upcoming-runs li").first).to_contain_text("22:30:00")
    page.goto(api.url + "/workflows")
    expect(page.locator(f'#workflows tr[data-workflow="{wf}"]')).to_contain_text("next ")
    assert errors == []
    page.context.close()


def steps_row(page: Page, i: int, field: str) -> Any:
    return page.locator("#steps-editor tr.step").nth(i).locator(f"[name=step-{field}]")


def graph_node(page: Page, step: str) -> Any:
    return page.locator(f'#workflow-graph g.node[data-step="{step}"]')


def test_a_workflow_page_draws_its_steps_and_a_chosen_runs_phases(
    browser: Browser, api: ApiServer, kube_client: Client, namespace: str
) -> None:
    page, errors = open_page(browser, api.url + "/workflows")
    r = page.request.post(api.url + "/api/agents", data={**AGENT, "name": "Writer"})
    assert r.status == 201, r.text()
    page.reload()

    # A three-step diamond written in the step rows: plan, then draft, then review after both.
    page.fill("input[name=name]", "Essay")
    steps_row(page, 0, "name").fill("plan")
    steps_row(page, 0, "input").fill("Plan an essay on {{ params.topic }}")
    steps_row(page, 1, "name").fill("draft")
    steps_row(page, 1, "after").fill("plan")
    steps_row(page, 1, "input").fill("Draft it")
    page.click("#add-step")
    steps_row(page, 2, "name").fill("review")
    steps_row(page, 2, "after").fill("plan, nope")
    expect(page.locator('[data-step-error="2"]')).to_contain_text("no step named nope")  # before saving
    steps_row(page, 2, "after").fill("plan, draft")
    expect(page.locator('[data-step-error="2"]')).to_have_text("")
    expect(page.locator("#draft-graph path.edge")).to_have_count(3)
    spec = json.loads(page.input_value("textarea[name=spec]"))  # the rows, written into the JSON
    assert [(st["name"], st.get("dependsOn")) for st in spec["steps"]] == [
        ("plan", None),
        ("draft", ["plan"]),
        ("review", ["plan", "draft"]),
    ]
    page.click("#save-workflow")
    page.wait_for_url("**/workflows/essay-*")
    wf = page.url.rsplit("/", 1)[1]

    expect(page.locator("#workflow-graph g.node")).to_have_count(3)
    edges = page.locator("#workflow-graph path.edge")
    expect(edges).to_have_count(3)
    pairs = {(e.get_attribute("data-from"), e.get_attribute("data-to")) for e in edges.all()}
    assert pairs == {("plan", "draft"), ("plan", "review"), ("draft", "review")}
    x = {st: graph_node(page, st).bounding_box()["x"] for st in ("plan", "draft", "review")}
    assert x["plan"] < x["draft"] < x["review"]  # a column per depth
    expect(page.locator("#workflow-graph g.node[data-phase]")).to_have_count(0)  # no run yet

    page.click("#run-workflow")
    page.wait_for_url("**/workflow-runs/essay-*")
    run = page.url.rsplit("/", 1)[1]
    page.goto(f"{api.url}/workflows/{wf}")
    expect(page.locator("#graph-run")).to_have_value(run)  # the newest run is shown
    expect(graph_node(page, "plan")).to_have_attribute("data-phase", "Running", timeout=30_000)
    expect(graph_node(page, "review")).to_have_attribute("data-phase", "Pending")
    expect(graph_node(page, "plan")).to_have_class(re.compile(r"\bphase-Running\b"))
    finish(kube_client, namespace, run, "plan", "0.0100")
    expect(graph_node(page, "plan")).to_have_attribute("data-phase", "Succeeded", timeout=30_000)
    expect(graph_node(page, "draft")).to_have_attribute("data-phase", "Running", timeout=30_000)
    expect(graph_node(page, "plan")).to_contain_text("$0.01")
    save(page, "workflow.png")

    # A run made with kubectl joins the list live; choosing it shows its phases, "no run" none.
    owner = kube_client.get(Workflow, wf, namespace=namespace).metadata.labels["agentry.dev/owner"]
    manual = {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "WorkflowRun",
        "metadata": {"name": f"{wf}-manual", "labels": {"agentry.dev/owner": owner}},
        "spec": {"workflowRef": {"name": wf}},
    }
    kube_client.create(WorkflowRun.from_dict(manual), namespace=namespace)
    expect(page.locator(f'#graph-run option[value="{wf}-manual"]')).to_have_count(1, timeout=30_000)
    page.select_option("#graph-run", f"{wf}-manual")
    expect(page.locator("#workflow-graph")).to_have_attribute("data-run", f"{wf}-manual")
    expect(graph_node(page, "plan")).to_have_attribute("data-phase", re.compile(r"^\w+$"))
    page.select_option("#graph-run", "")
    expect(page.locator("#workflow-graph g.node[data-phase]")).to_have_count(0)
    expect(page.locator("#workflow-graph g.node")).to_have_count(3)
    assert errors == []
    page.context.close()
