"""The Triggers pages in headless Chromium: a trigger created in the form (a bad template refused on
the form first) shows its URL and key once; signed and forged deliveries sent over HTTP appear on the
trigger's page with their outcome and reason, the accepted one linking to the run it started; the
key rotated from the page works and the old one does not; the trigger deleted from the page."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, expect

from agentry_common.triggers import sign_github
from tests.fixtures.helpers import eventually
from tests.integration.api.server import ApiServer

from .test_dashboard import browser
from .test_workflow_pages import open_page

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

AGENT = {"name": "Reviewer", "spec": {"instructions": "Review.", "model": {"name": "claude-sonnet-4-5"}}}


def deliver(api: ApiServer, key: str, payload: object) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": str(uuid.uuid4()),
    }
    return httpx.post(
        f"{api.url}/hooks/pushes", content=body, headers={**headers, **sign_github(key.encode(), body)}
    )


def test_create_a_trigger_see_its_deliveries_rotate_and_delete(browser: Browser, api: ApiServer) -> None:
    page, errors = open_page(browser, api.url + "/", ignore="422")
    # A control plane that has just made the CRDs answers "storage is (re)initializing" for a moment.
    eventually(lambda: page.request.get(api.url + "/api/triggers").status == 200, what="triggers listed")
    page.goto(api.url + "/triggers")
    expect(page.locator("#triggers tbody")).to_contain_text("No triggers yet")
    r = page.request.post(api.url + "/api/agents", data=AGENT)
    assert r.status == 201, r.text()
    agent = r.json()["id"]
    page.reload()

    page.fill("#trigger-form input[name=name]", "pushes")
    page.select_option("#trigger-form select[name=agent]", agent)
    page.fill("#trigger-form input[name=input]", "{{ $[ }}")
    page.click("#trigger-form button[type=submit]")
    expect(page.locator('#trigger-form [data-for="mapping"]')).to_contain_text("not a JSONPath")
    page.fill("#trigger-form input[name=input]", "Check {{ $.ref }}")
    page.click("#trigger-form button[type=submit]")
    expect(page.locator("#trigger-secret")).to_be_visible()
    key = page.locator("#secret-value").inner_text()
    expect(page.locator("#secret-url")).to_have_text(f"{api.url}/hooks/pushes")
    assert len(key) >= 40

    accepted = deliver(api, key, {"ref": "main"})
    assert accepted.status_code == 202, accepted.text
    run = accepted.json()["execution"]
    assert deliver(api, "forged", {"ref": "x"}).status_code == 401

    page.click("#secret-link")
    page.wait_for_url("**/triggers/pushes")
    expect(page.locator("#trigger-url")).to_have_text(f"{api.url}/hooks/pushes")
    assert key not in page.content()  # shown once, never rendered again
    rows = page.locator("#deliveries tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator('#deliveries tr[data-outcome="Refused"]')).to_contain_text("SignatureInvalid")
    link = page.locator('#deliveries tr[data-outcome="Accepted"] a.run-link')
    expect(link).to_have_text(run)
    link.click()
    page.wait_for_url(f"**/executions/{run}")
    expect(page.locator("body")).to_contain_text("trigger Webhook")
    page.go_back()

    page.once("dialog", lambda d: d.accept())
    page.click('button[data-trigger-action="rotate"]')
    expect(page.locator("#trigger-secret")).to_be_visible()
    new_key = page.locator("#secret-value").inner_text()
    assert new_key and new_key != key
    assert deliver(api, key, {"ref": "old"}).status_code == 401
    assert deliver(api, new_key, {"ref": "new"}).status_code == 202

    page.once("dialog", lambda d: d.accept())
    page.click('button[data-trigger-action="delete"]')
    page.wait_for_url("**/triggers")
    expect(page.locator("#triggers tbody")).to_contain_text("No triggers yet")
    assert errors == [], errors
