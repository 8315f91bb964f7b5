"""A first visit always gets a page: with guests off, or this address's guest sessions used up, a
browser asking for the dashboard gets the sign-in page (the reason in words, the token form, the OIDC
link where configured, and app.js, which turns a `#token=` link into a session); an API client gets
the JSON problem body. Real servers (uvicorn, the Firestore emulator)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from agentry_localcluster.kube import ControlPlane

from .server import ApiServer, api_settings, serve

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
JSON = {"Accept": "application/json"}
OIDC = {
    "oidc_issuer": "https://issuer.test",
    "oidc_audience": "agentry-test",
    "oidc_jwks_url": "http://127.0.0.1:9/jwks",  # never fetched here
    "oidc_signin_url": "/oauth2/start?rd=/",
}


@pytest.fixture
def no_guests_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None
) -> Iterator[ApiServer]:
    settings = api_settings(firestore_project, namespace, str(kube.kubeconfig), guest_sessions=False, **OIDC)
    yield from serve(settings)


@pytest.fixture
def one_guest_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None
) -> Iterator[ApiServer]:
    yield from serve(api_settings(firestore_project, namespace, str(kube.kubeconfig), guest_mints_per_hour=1))


def sign_in_page(r: httpx.Response, status: int, reason: str) -> None:
    """The sign-in page, with the reason, the token form and the script that reads `#token=`."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html"), r.headers
    assert 'data-page="signin"' in r.text and reason in r.text, r.text
    assert '<form id="token-login"' in r.text and '<script src="/static/app.js">' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-request-id"] in r.text  # the correlation id, as in the JSON body
    assert "agentry_session" not in r.headers.get("set-cookie", "")


def test_guests_off_a_browser_gets_the_sign_in_page_and_an_api_client_json(no_guests_api: ApiServer) -> None:
    c = no_guests_api.client()
    for path in ("/", "/executions", "/settings"):
        page = c.get(path, headers=BROWSER)
        sign_in_page(page, 401, "guest sessions are off on this server")
        assert '<a id="oidc-signin" class="button" href="/oauth2/start?rd=/">' in page.text
    r = c.get("/", headers=JSON)
    assert r.status_code == 401 and r.headers["content-type"] == "application/json"
    assert r.json()["reason"] == "Unauthorized" and "guest sessions are off" in r.json()["detail"]
    r = c.get("/api/agents", headers=BROWSER)  # the API is JSON whatever the client accepts
    assert r.status_code == 401 and r.json()["reason"] == "Unauthorized"
    # A signed-in browser gets the dashboard itself.
    assert c.get("/", headers={**BROWSER, **ADMIN}).status_code == 200


def test_guest_limit_used_up_a_browser_gets_the_sign_in_page_and_can_sign_in(
    one_guest_api: ApiServer,
) -> None:
    api = one_guest_api
    first = api.client().get("/", headers=BROWSER)
    assert first.status_code == 200 and "agentry_session" in first.headers["set-cookie"]
    c = api.client()
    page = c.get("/", headers=BROWSER)
    sign_in_page(page, 429, "too many guest sessions from this client (at most 1 per hour)")
    assert int(page.headers["retry-after"]) > 0
    assert "oidc-signin" not in page.text  # no OIDC configured: no link
    r = c.get("/", headers=JSON)
    assert r.status_code == 429 and r.json()["limit"] == "guest_sessions"
    assert r.headers["content-type"] == "application/json"
    # What the page's script does with `#token=`: a token signs this browser in, limit or not.
    token = api.client(headers=ADMIN).post("/api/tokens", json={"name": "link"}).json()["token"]
    assert c.post("/api/session/token", json={"token": token}).status_code == 200
    signed_in = c.get("/", headers=BROWSER)
    assert signed_in.status_code == 200 and 'data-page="agents"' in signed_in.text
