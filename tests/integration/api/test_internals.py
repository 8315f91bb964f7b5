"""No internals to strangers (docs/security.md): with the shipped defaults the API's port serves neither
its metrics nor its OpenAPI document to anyone; an admin turns the document on, and the metrics have
a port of their own that no Service for users or Ingress routes. Real servers (uvicorn, emulator)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from agentry_api.settings import Settings
from agentry_localcluster import localhttp
from agentry_localcluster.kube import ControlPlane
from agentry_localcluster.procs import quiet_port

from .server import ApiServer, api_settings, serve

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
INTERNALS = ("/metrics", "/docs", "/redoc", "/openapi.json")


def shipped(*names: str) -> dict[str, object]:
    fields = Settings.model_fields
    return {k: fields[k].get_default(call_default_factory=True) for k in names}


@pytest.fixture
def shipped_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None
) -> Iterator[ApiServer]:
    """The API as `helm install` runs it, as far as these switches go."""
    defaults = shipped("openapi", "metrics_port", "guest_sessions", "cookie_secure")
    yield from serve(api_settings(firestore_project, namespace, str(kube.kubeconfig), **defaults))


def test_anonymous_metrics_and_openapi_are_refused_by_default(shipped_api: ApiServer) -> None:
    c = shipped_api.client()
    assert c.get("/healthz").json() == {"status": "ok"}  # probes still answer (a status only)
    for path in INTERNALS:
        for headers in ({}, BROWSER, ADMIN):  # not even with a credential: not on this port at all
            r = c.get(path, headers=headers)
            assert r.status_code == 404, (path, headers, r.status_code)
            assert "agentry_api_" not in r.text and "/api/agents" not in r.text, path


def test_an_admin_turns_the_openapi_document_on_and_metrics_have_their_own_port(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None
) -> None:
    port = quiet_port("127.0.0.1")
    settings = api_settings(
        firestore_project,
        namespace,
        str(kube.kubeconfig),
        openapi=True,
        metrics_port=port,
        metrics_address="127.0.0.1",
    )
    served = False
    for api in serve(settings):
        c = api.client()
        assert c.get("/docs").status_code == 200
        assert "/api/agents/{agent_id}/runs" in c.get("/openapi.json").json()["paths"]
        assert c.get("/api/agents", headers=ADMIN).status_code == 200
        assert c.get("/metrics").status_code == 404  # never on the API's port
        text = localhttp.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'agentry_api_requests_total{method="GET",route="/api/agents",status="200"}' in text
        served = True
    assert served
    with pytest.raises(httpx.ConnectError):  # the metrics stop with the API
        localhttp.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
