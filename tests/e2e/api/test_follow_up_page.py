"""A follow-up in headless Chromium: a finished run's page replies, the continuation joins its thread
live from the event stream with its phase and cost, and links both ways; a live run's message box is
disabled with the reason when the run cannot be steered."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lightkube import Client
from playwright.sync_api import Browser, expect

from agentry_api.auth import SESSION_COOKIE
from agentry_common.resources import Execution
from tests.e2e.api.test_dashboard import ARTIFACTS, browser
from tests.fixtures.helpers import play_kubelet
from tests.integration.api import test_follow_ups as governed
from tests.integration.api.helpers import create_agent, pod_of, run, wait_api_phase
from tests.integration.api.server import ApiServer
from tests.integration.api.test_follow_ups import FOLLOW_UP_REPORT, finished_run

pytestmark = pytest.mark.e2e

# Follow-ups need the LLM gateway: the governed stack of the API's follow-up tests (their `api`,
# `kube_client` and `namespace` replace the shared ones here).
plane, gateway, governed_operator = governed.plane, governed.gateway, governed.governed_operator
api, kube_client, namespace = governed.api, governed.kube_client, governed.namespace

__all__ = ["browser"]


def test_reply_on_a_finished_run_and_see_the_continuation_in_the_thread(
    browser: Browser, api: ApiServer, kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    client = api.guest()  # the browser signs in as this guest (its session cookie)
    agent = create_agent(client)
    parent = finished_run(client, kube_client, namespace, agent["id"])
    live = run(client, agent["id"])["execution"]
    play_kubelet(kube_client, pod_of(kube_client, namespace, live), "Running")
    wait_api_phase(client, live, "Running")

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.add_cookies(
        [{"name": SESSION_COOKIE, "value": str(client.cookies[SESSION_COOKIE]), "url": api.url}]
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    # A live run is steered, which needs the gateway at the API (this one has none): the box says why.
    page.goto(f"{api.url}/executions/{live}")
    expect(page.locator("#reply-send")).to_be_disabled()
    expect(page.locator("#reply-why")).to_contain_text("cannot be steered")

    page.goto(f"{api.url}/executions/{parent}")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#thread")).to_be_hidden()  # a run alone has no thread yet
    expect(page.locator("#reply-send")).to_be_enabled()
    page.evaluate("window.__notReloaded = true")
    page.fill("#reply-message", "Now do the same for Friday.")
    page.click("#reply-send")
    expect(page.locator("#toast")).to_contain_text("Follow-up")
    row = page.locator('#thread-runs tr[data-relation="continuation"]')
    expect(row).to_have_count(1, timeout=20_000)  # from the event stream, not the command's answer
    child = row.get_attribute("data-run")
    assert child and child != parent
    assert client.get(f"/api/executions/{child}").json()["parent"] == parent
    assert kube_client.get(Execution, child, namespace=namespace).spec["parentRef"] == {"name": parent}
    expect(page.locator('#thread-runs tr[data-relation="self"] .cost')).to_have_text("$0.0081")

    # The continuation runs and ends: its row follows live, with its own cost.
    pod = pod_of(kube_client, namespace, child)
    play_kubelet(kube_client, pod, "Running")
    expect(row.locator(".pill")).to_have_text("Running", timeout=20_000)
    play_kubelet(kube_client, pod, "Succeeded", 0, FOLLOW_UP_REPORT)
    expect(row.locator(".pill")).to_have_text("Succeeded", timeout=20_000)
    expect(row.locator(".cost")).to_have_text("$0.0075")
    expect(row.locator(".tokens")).to_have_text("2100")
    assert page.evaluate("window.__notReloaded") is True, "the thread must change from the stream"
    path = tmp_path / "follow-up-thread.png"
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)

    # The continuation's page links back to the run it continues.
    row.locator("a").click()
    page.wait_for_url(f"**/executions/{child}")
    expect(page.locator("#parent")).to_have_text(parent)
    expect(page.locator('#thread-runs tr[data-relation="ancestor"]')).to_have_attribute("data-run", parent)
    assert not errors, errors
    context.close()
