"""The workflow pages in headless Chromium: a diamond written in the Workflows page's form (a refused
graph shown on the form first), run now, and the run's graph drawn as SVG with each step's phase and
cost following the operator as step pods complete. Screenshot: docs/screenshots/workflow-run.png."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from lightkube import Client
from playwright.sync_api import Browser, Page, expect

from agentry_common.naming import job_name
from agentry_common.resources import Execution, WorkflowRun
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


def node(page: Page, step: str) -> Any:
    return page.locator(f'#run-graph g.node[data-step="{step}"]')


def test_write_run_and_watch_a_workflow_graph(
    browser: Browser, api: ApiServer, kube_client: Client, namespace: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "422" not in m.text else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(api.url + "/workflows")  # a guest session in the browser's cookie
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
    page.fill("textarea[name=spec]", json.dumps(cyclic))
    page.click("#save-workflow")
    expect(page.locator('[data-for="spec"]')).to_contain_text("cycle")  # the webhook's 422, on the form
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
    context.close()
