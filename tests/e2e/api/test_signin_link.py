"""The sign-in link `make dev` prints (`/#token=<API token>`) in headless Chromium while this address's
guest sessions are used up: the first answer is the sign-in page (429, HTML), whose script reads the
fragment, opens a session with the token and reloads into the dashboard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from agentry_localcluster.kube import ControlPlane
from tests.integration.api.server import ApiServer, api_settings, serve

from .test_dashboard import browser

pytestmark = pytest.mark.e2e
__all__ = ["browser"]  # the module's Chromium fixture


@pytest.fixture
def one_guest_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None
) -> Iterator[ApiServer]:
    yield from serve(api_settings(firestore_project, namespace, str(kube.kubeconfig), guest_mints_per_hour=1))


def test_the_token_link_signs_in_while_the_guest_limit_is_used_up(
    browser: Browser, one_guest_api: ApiServer
) -> None:
    api = one_guest_api
    assert api.client().post("/api/session/guest").status_code == 201  # this address's one guest
    admin = api.client(headers={"Authorization": "Bearer admin-token-for-tests"})
    token = admin.post("/api/tokens", json={"name": "link"}).json()["token"]
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    first = page.goto(api.url + "/")  # no link: the sign-in page says why
    assert first is not None and first.status == 429
    expect(page.locator("#signin-reason")).to_contain_text("too many guest sessions from this client")
    expect(page.locator("#token-login input[name=token]")).to_be_visible()

    fresh = context.new_page()  # the link opened in a new tab: a fresh load, not a hash change
    fresh.on("pageerror", lambda e: errors.append(str(e)))
    linked = fresh.goto(f"{api.url}/#token={token}")
    assert linked is not None and linked.status == 429  # the same page: its script signs in
    expect(fresh.locator("body")).to_have_attribute("data-page", "agents", timeout=20_000)
    expect(fresh.locator(".who")).to_have_text("admin")
    expect(fresh.locator("#live")).to_have_text("live")
    assert "token=" not in fresh.url  # dropped from the address bar
    assert "agentry_session" in {c["name"] for c in context.cookies()}
    # The first page's console saw its 429 (the load itself); nothing else went wrong.
    assert [e for e in errors if "429" not in e] == [], errors
    context.close()
