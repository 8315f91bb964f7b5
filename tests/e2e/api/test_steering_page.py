"""Steering in headless Chromium: a Running run's page sends a message (Send) and an interrupt
(Interrupt), lists both with their states, says the agent's double-texting policy, and shows a
message turn `delivered` when the run takes it (the runtime's append, played with its run token)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightkube import Client
from playwright.sync_api import Browser, expect

from agentry_api.auth import SESSION_COOKIE
from tests.e2e.api.test_dashboard import ARTIFACTS, browser
from tests.integration.api import test_follow_ups as governed
from tests.integration.api import test_steering as steering
from tests.integration.api.server import ApiServer
from tests.integration.operator.test_governance import Gateway

pytestmark = pytest.mark.e2e

# The governed stack of the API's steering tests: the API configured with the gateway.
plane, gateway, governed_operator = governed.plane, governed.gateway, governed.governed_operator
kube_client, namespace, gateway_api = governed.kube_client, governed.namespace, governed.gateway_api
api = steering.api

__all__ = ["browser"]


def test_send_and_interrupt_a_running_run_and_see_the_states(
    browser: Browser, api: ApiServer, gateway: Gateway, kube_client: Client, namespace: str, tmp_path: Path
) -> None:
    client = api.guest()
    spec = {"instructions": "Go.", "model": {"name": "claude-sonnet-4-5"}, "steering": {"pending": "replace"}}
    name, uid = steering.live_run(client, kube_client, namespace, spec=spec)

    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.add_cookies(
        [{"name": SESSION_COOKIE, "value": str(client.cookies[SESSION_COOKIE]), "url": api.url}]
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{api.url}/executions/{name}")
    expect(page.locator("#reply-send")).to_have_text("Send")
    expect(page.locator("#reply-send")).to_be_enabled()
    expect(page.locator("#steer-policy")).to_contain_text("Double-texting: replace")
    page.fill("#reply-message", "Skip sports; add the weather.")
    page.click("#reply-send")
    first = page.locator('#steer-messages li[data-seq="1"]')
    expect(first).to_contain_text("Skip sports; add the weather.")
    expect(first).to_have_attribute("data-state", "queued")

    # The run takes it at its next turn: the page turns it delivered by itself.
    steering.append(gateway, steering.runtime(gateway, namespace, name, uid), delivered=[1])
    expect(first).to_have_attribute("data-state", "delivered", timeout=10_000)

    page.click("#reply-interrupt")
    second = page.locator('#steer-messages li[data-seq="2"]')
    expect(second).to_contain_text("Interrupt")
    expect(second).to_have_attribute("data-state", "queued")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "steering.png"), full_page=True)
    assert errors == []
    context.close()
