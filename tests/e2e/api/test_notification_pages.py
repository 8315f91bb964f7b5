"""The Notifications page in headless Chromium: a webhook subscribed from the form (a metadata address
refused on the form) shows its signing secret once; a run's end to a sink that never answers becomes a
dead letter on the page; Redeliver sends it again (same id) once the sink answers; the subscription is
disabled and deleted from the page."""
# ruff: noqa: F811  (the notifying API fixture `napi`, imported from tests/integration/api/test_notifications.py)

from __future__ import annotations

import pytest
from lightkube import Client
from playwright.sync_api import Browser, expect

from tests.fixtures.helpers import eventually, play_kubelet
from tests.fixtures.notify_receiver import Receiver
from tests.integration.api.helpers import REPORT, pod_of
from tests.integration.api.server import ApiServer
from tests.integration.api.test_notifications import napi  # noqa: F401

from .test_dashboard import ARTIFACTS, browser
from .test_workflow_pages import open_page

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

AGENT = {"name": "Nightly", "spec": {"instructions": "Report.", "model": {"name": "claude-sonnet-4-5"}}}


def test_subscribe_see_a_dead_letter_and_redeliver_it(
    browser: Browser, napi: ApiServer, kube_client: Client, namespace: str
) -> None:
    receiver = Receiver(hang=True)
    try:
        page, errors = open_page(browser, napi.url + "/notifications", ignore="422")
        page.on("dialog", lambda d: d.accept())
        expect(page.locator("#subscriptions tbody")).to_contain_text("No subscriptions")

        page.fill("#subscription-form input[name=name]", "ops")
        page.fill("#subscription-form input[name=url]", "http://169.254.169.254/latest")
        page.click("#subscription-form button[type=submit]")
        expect(page.locator('#subscription-form [data-for="url"]')).to_contain_text("metadata")
        page.fill("#subscription-form input[name=url]", receiver.url)
        page.check('#subscription-form input[value="run.succeeded"]')
        page.click("#subscription-form button[type=submit]")
        expect(page.locator("#new-secret")).to_contain_text("whsec_")
        page.reload()
        row = page.locator("#subscriptions tbody tr", has_text="ops")
        expect(row).to_contain_text("run.succeeded")
        expect(page.locator("#new-secret")).to_be_hidden()  # shown once

        r = page.request.post(napi.url + "/api/agents", data=AGENT)
        assert r.status == 201, r.text()
        r = page.request.post(f"{napi.url}/api/agents/{r.json()['id']}/runs")
        assert r.status == 202, r.text()
        name = r.json()["execution"]
        play_kubelet(kube_client, pod_of(kube_client, namespace, name), "Succeeded", 0, REPORT)

        def dead_listed() -> bool:
            page.reload()
            return page.locator("#dead tbody tr[data-delivery]").count() == 1

        eventually(dead_listed, timeout=60, what="the dead letter on the page")
        dead = page.locator("#dead tbody tr[data-delivery]")
        expect(dead).to_contain_text("no answer")
        delivery = dead.get_attribute("data-delivery")
        page.screenshot(path=str(ARTIFACTS / "dashboard-notifications.png"), full_page=True)

        receiver.hang.clear()
        dead.locator("button", has_text="Redeliver").click()
        expect(page.locator("#toast")).to_contain_text("sent again")

        def delivered() -> bool:
            page.reload()
            return "delivered" in page.locator(f'#deliveries tr[data-delivery="{delivery}"]').inner_text()

        eventually(delivered, timeout=30, what="the redelivery shown delivered")
        assert {x.headers["webhook-id"] for x in receiver.received} == {delivery}
        assert receiver.bodies()[-1]["execution"] == name

        page.locator("#subscriptions button", has_text="Disable").click()
        expect(page.locator("#subscriptions tbody")).to_contain_text("disabled")
        page.locator("#subscriptions button", has_text="Delete").click()
        expect(page.locator("#subscriptions tbody")).to_contain_text("No subscriptions")
        assert errors == []
    finally:
        receiver.close()
