"""The dashboard in headless Chromium (Debian's, driven by Playwright): create an agent, run it, watch
the status change live from the event stream, open the detail, approve a pending action."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.cloud import firestore
from lightkube import Client
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright

from agentry_api.cluster import Execution
from agentry_gateway.config import GatewayConfig
from agentry_gateway.ledger import FirestoreLedger
from tests.fixtures.helpers import eventually, play_kubelet
from tests.integration.api.helpers import REPORT, pod_of, request_approval
from tests.integration.api.server import ApiServer

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed: apt-get install -y chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Shots:
    def __init__(self, page: Page, tmp: Path) -> None:
        self.page, self.tmp = page, tmp
        ARTIFACTS.mkdir(exist_ok=True)

    def __call__(self, name: str) -> None:
        path = self.tmp / f"dashboard-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, ARTIFACTS / path.name)


def record_call(api: ApiServer, namespace: str, execution: str, uid: str) -> None:
    """One call record of the Execution, written by the gateway's own Firestore ledger."""
    record = {
        "id": uuid.uuid4().hex,
        "ts": time.time(),
        "outcome": "ok",
        "namespace": namespace,
        "execution": execution,
        "executionUid": uid,
        "protocol": "anthropic",
        "requestedModel": "claude-sonnet-4-6",
        "model": "gpt-4.1-mini",
        "channel": "openai",
        "fallbacks": 1,
        "fallbackPath": ["anthropic:claude-sonnet-4-6 -> openai:gpt-4.1-mini"],
        "retries": 1,
        "inputTokens": 1000,
        "outputTokens": 300,
        "charged": {"tokens": 1300, "messages": 1, "costUSD": "0.00088", "costNanos": 880_000},
        "latencyMs": 420.0,
        "decision": {"action": "allow", "zone": "normal"},
    }

    async def write() -> None:
        client = firestore.AsyncClient(project=api.settings.google_cloud_project)
        try:
            cfg = GatewayConfig()
            ledger = FirestoreLedger(client, cfg.budgets, cfg.calendar, cfg.thresholds, cfg.keep_seconds)
            await ledger.record_call(record)
        finally:
            client.close()

    # Playwright's sync API runs an event loop in this thread: the ledger's async client gets its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, write()).result()


def test_create_run_watch_live_and_approve(
    browser: Browser, api: ApiServer, kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    expected = "status of 422"  # the invalid form submission below
    page.on(
        "console", lambda m: errors.append(m.text) if m.type == "error" and expected not in m.text else None
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = Shots(page, tmp_path)

    page.goto(api.url + "/")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#agents tbody")).to_contain_text("No agents yet")
    shot("1-empty")

    page.click("#new-agent")
    page.fill("input[name=name]", "Browser agent")
    page.fill("textarea[name=instructions]", "Say hello to the browser.")
    page.check("input[name=tools][value=files]")
    page.fill("input[name=maxTurns]", "0")
    page.click("#save-agent")
    expect(page.locator('[data-for="spec.budget"]')).to_contain_text("maxTurns")  # 422 shown on the field
    page.fill("input[name=maxTurns]", "5")
    page.click("#save-agent")
    page.wait_for_url("**/agents/browser-agent-*")
    agent_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("#agent-ready")).to_have_text("True", timeout=30_000)  # from the stream
    shot("2-agent")

    page.evaluate("window.__notReloaded = true")
    page.click("#run-now")
    expect(page.locator("#toast")).to_contain_text("accepted")
    row = page.locator("#executions tbody tr[data-execution]")
    expect(row).to_have_count(1, timeout=20_000)
    name = row.first.get_attribute("data-execution")
    assert name and name.startswith(agent_id)
    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Running")
    expect(row.first.locator(".pill")).to_have_text("Running", timeout=20_000)
    shot("3-running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    expect(row.first.locator(".pill")).to_have_text("Succeeded", timeout=20_000)
    expect(row.first).to_contain_text("$0.0081")
    assert page.evaluate("window.__notReloaded") is True, "the page reloaded: updates must come from SSE"
    shot("4-succeeded")

    # Its LLM calls, as the gateway records them, on the run's page: the model that answered and the
    # fallback taken.
    uid = kube_client.get(Execution, name, namespace=namespace).metadata.uid  # type: ignore[union-attr]
    record_call(api, namespace, name, str(uid))
    page.goto(f"{api.url}/executions/{name}")
    calls = page.locator("#llm-calls")
    expect(calls.locator("tr[data-call]")).to_have_count(1)
    expect(calls.locator(".model-used")).to_have_text("gpt-4.1-mini")
    expect(calls.locator(".fallbacks")).to_contain_text("anthropic:claude-sonnet-4-6 -> openai:gpt-4.1-mini")
    expect(page.locator("#llm-calls-totals")).to_contain_text("1 calls · 1300 tokens")
    expect(page.locator("#cancel")).to_be_hidden()  # a finished run cannot be cancelled
    shot("4b-llm-calls")
    page.goto(f"{api.url}/agents/{agent_id}")
    expect(page.locator("#live")).to_have_text("live")

    # A second run stops before a RED action; the detail page shows it and the approval goes through.
    page.click("#run-now")
    expect(row).to_have_count(2, timeout=20_000)
    second = next(n for n in (r.get_attribute("data-execution") for r in row.all()) if n and n != name)
    page.click(f"a[href='/executions/{second}']")
    page.wait_for_url(f"**/executions/{second}")
    expect(page.locator("#live")).to_have_text("live")
    # A call the gateway meters while the run is active appears without a reload.
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#llm-calls-empty")).to_be_visible()
    second_uid = kube_client.get(Execution, second, namespace=namespace).metadata.uid  # type: ignore[union-attr]
    record_call(api, namespace, second, str(second_uid))
    expect(page.locator("#llm-calls tr[data-call]")).to_have_count(1, timeout=15_000)
    assert page.evaluate("window.__notReloaded") is True, "the calls must be re-read, not the page"
    request_approval(kube_client, namespace, second, f"{second}-ap")
    expect(page.locator("#approval")).to_be_visible(timeout=30_000)
    expect(page.locator("#phase")).to_have_text("WaitingApproval")
    expect(page.locator("#cancel")).to_be_visible()
    expect(page.locator("#approval-summary")).to_have_text("rm -rf /workspace/cache")
    expect(page.locator("#approval-count")).to_have_text("1")
    shot("5-waiting-approval")
    page.fill("#approval-reason", "checked the path")
    page.click("#approve")
    expect(page.locator("#toast")).to_contain_text("Approved")
    expect(page.locator("#decisions")).to_contain_text("approved", timeout=20_000)
    expect(page.locator("#event-log")).to_contain_text("approval decided")
    shot("6-approved")
    [decision] = eventually(
        lambda: kube_client.get(Execution, second, namespace=namespace).spec.get("approvals"),
        what="the decision on the Execution",
    )
    assert decision["approved"] is True and decision["reason"] == "checked the path"

    page.goto(api.url + "/usage")
    expect(page.locator("#usage-executions")).to_have_text("2")
    shot("7-usage")
    page.goto(api.url + "/approvals")
    expect(page.locator("#decided")).to_contain_text("approved")
    assert not errors, errors
    context.close()


def test_the_page_reconnects_after_an_answer_that_is_not_a_stream(browser: Browser, api: ApiServer) -> None:
    """A 503 (the API's request deadline) or a 429 (the streams quota) on /api/events closes an
    EventSource for good; the page opens a new one after a pause and goes on updating."""
    context = browser.new_context()
    page = context.new_page()
    answered: list[int] = []

    def first_refused(route: Route) -> None:
        if not answered:
            answered.append(503)
            route.fulfill(status=503, headers={"Retry-After": "5"}, json={"reason": "Unavailable"})
        else:
            answered.append(200)
            route.continue_()

    page.route("**/api/events*", first_refused)
    page.goto(api.url + "/")
    expect(page.locator("#live")).to_have_text("live", timeout=30_000)
    assert answered[:2] == [503, 200]
    spec = {"instructions": "Read.", "model": {"name": "claude-sonnet-4-5"}}
    r = page.request.post(api.url + "/api/agents", data={"name": "After the 503", "spec": spec})
    assert r.status == 201, r.text()
    expect(page.locator("#agents tbody")).to_contain_text("After the 503", timeout=20_000)  # a report
    context.close()


def test_saving_the_form_keeps_what_it_does_not_show_and_sets_the_between_runs_options(
    browser: Browser, api: ApiServer
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(api.url + "/")
    spec = {
        "instructions": "Read.",
        "model": {"name": "claude-sonnet-4-5"},
        "context": {"thresholdPercent": 70},
        "historyLimits": {"succeeded": 3},
        "resources": {"limits": {"memory": "768Mi"}},
        "budget": {"maxTurns": 9, "maxTokensPerRun": 50000},
    }
    r = page.request.post(api.url + "/api/agents", data={"name": "Form keeps", "spec": spec})
    assert r.status == 201, r.text()
    agent_id = r.json()["id"]
    page.goto(f"{api.url}/agents/{agent_id}/edit")
    page.fill("input[name=description]", "Edited in the browser.")
    page.check("input[name=workspacePersistent]")
    page.fill("input[name=workspaceSize]", "2Gi")
    page.select_option("select[name=steeringPending]", "reject")
    page.click("#save-agent")
    page.wait_for_url(f"**/agents/{agent_id}")
    saved = page.request.get(f"{api.url}/api/agents/{agent_id}").json()["spec"]
    assert saved["description"] == "Edited in the browser."
    assert (saved["workspace"]["persistent"], saved["workspace"]["size"]) == (True, "2Gi")
    assert saved["steering"]["pending"] == "reject" and saved["memory"]["enabled"] is False
    # What the form has no field for is as it was.
    assert saved["context"]["thresholdPercent"] == 70 and saved["historyLimits"]["succeeded"] == 3
    assert saved["resources"]["limits"] == {"memory": "768Mi"}
    assert saved["budget"] == {**saved["budget"], "maxTurns": 9, "maxTokensPerRun": 50000}
    context.close()
