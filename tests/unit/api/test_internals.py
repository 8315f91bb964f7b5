"""No internals to strangers, and a browser gets a page, never raw JSON (the app without its lifespan:
no Firestore, no cluster). The same over real servers: tests/integration/api/test_internals.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from agentry_api.main import create_app
from agentry_api.settings import Settings
from agentry_localcluster import localhttp
from agentry_localcluster.procs import quiet_port

pytestmark = pytest.mark.unit

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
INTERNALS = ("/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


def client(**settings: Any) -> TestClient:
    app = create_app(Settings(trusted_hosts=["testserver"], **settings))
    return TestClient(app, raise_server_exceptions=False)  # not entered: no lifespan, no clients


def test_metrics_and_the_openapi_document_answer_no_stranger_by_default() -> None:
    c = client()
    for path in INTERNALS:
        for accept in ("application/json", BROWSER):
            r = c.get(path, headers={"accept": accept})
            assert r.status_code == 404, (path, r.status_code)
            assert "agentry_api_" not in r.text and "swagger" not in r.text.lower(), path
            assert "/api/agents" not in r.text, path
    assert Settings().openapi is False and Settings().metrics_port == 0


def test_an_admin_turns_the_openapi_document_on() -> None:
    c = client(openapi=True)
    assert c.get("/docs").status_code == 200 and c.get("/redoc").status_code == 200
    paths = c.get("/openapi.json").json()["paths"]
    assert "/api/agents/{agent_id}/runs" in paths and "/api/events" in paths
    assert c.get("/metrics").status_code == 404  # the metrics stay off the API's port


def test_metrics_are_served_on_a_port_of_their_own() -> None:
    from agentry_api.metrics import serve_metrics

    client().get("/healthz")  # counted
    port = quiet_port("127.0.0.1")
    stop = serve_metrics(port, "127.0.0.1")
    try:
        text = localhttp.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        stop()
    assert 'agentry_api_requests_total{method="GET",route="/healthz",status="200"}' in text
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        localhttp.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    serve_metrics(0, "127.0.0.1")()  # 0: not served, nothing to stop


def test_a_browser_gets_a_page_and_an_api_client_json() -> None:
    c = client()
    page = c.get("/no/such/page", headers={"accept": BROWSER, "x-request-id": "req-7"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert (
        "404 Not Found" in page.text and "req-7" in page.text and '<script src="/static/app.js">' in page.text
    )
    assert "script-src 'self'" in page.headers["content-security-policy"]  # the pages' CSP
    for accept in ("application/json", "application/json, text/html;q=0.5", ""):
        r = c.get("/no/such/page", headers={"accept": accept} if accept else {})
        wanted = "text/html" if accept == "" else "application/json"  # no Accept: anything, so a page
        assert r.status_code == 404 and r.headers["content-type"].startswith(wanted), accept
    api = c.get("/api/no/such/thing", headers={"accept": BROWSER})
    assert api.status_code == 404 and api.json()["reason"] == "NotFound"  # API paths: always JSON
    foreign = c.get("/", headers={"accept": BROWSER, "host": "rebind.attacker.example"})
    assert foreign.status_code == 400 and "AGENTRY_TRUSTED_HOSTS" in foreign.text
    assert foreign.headers["content-type"].startswith("text/html")  # a middleware's JSON too


def test_which_requests_are_page_navigations() -> None:
    from agentry_api.browser import quality, wants_page

    def scope(path: str, accept: str | None, method: str = "GET") -> dict[str, Any]:
        headers = [(b"accept", accept.encode())] if accept is not None else []
        return {"type": "http", "method": method, "path": path, "headers": headers}

    assert wants_page(scope("/", BROWSER)) and wants_page(scope("/agents/x", None))
    assert wants_page(scope("/", "*/*"))
    assert not wants_page(scope("/", "application/json"))
    assert not wants_page(scope("/", BROWSER, "POST"))
    for path in ("/api/agents", "/api", "/static/app.js", "/healthz", "/readyz", "/openapi.json"):
        assert not wants_page(scope(path, BROWSER)), path
    assert quality("text/*;q=0.4, */*;q=0.1", "text/html") == 0.4
    assert quality("application/json;q=bad", "application/json") == 0.0
    assert quality("TEXT/HTML", "text/html") == 1.0
