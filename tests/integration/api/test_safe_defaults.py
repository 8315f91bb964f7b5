"""The API's own defaults are the safe ones: no guests, Secure cookies, a Host allow-list, a body
ceiling before parsing, and no Secret an API-created agent may reference. Real servers throughout."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from agentry_api.settings import Settings
from agentry_localcluster.kube import ControlPlane

from .helpers import AGENT
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}


@pytest.fixture
def defaults_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None
) -> Iterator[ApiServer]:
    """The API with the shipped defaults for everything the test settings would otherwise relax."""
    shipped = Settings.model_fields
    safe = {k: shipped[k].get_default(call_default_factory=True) for k in ("guest_sessions", "cookie_secure")}
    server = start_api(api_settings(firestore_project, namespace, str(kube.kubeconfig), **safe))
    yield server
    server.stop()


def test_guests_are_off_and_sessions_need_https(defaults_api: ApiServer) -> None:
    c = defaults_api.client()
    refused = c.post("/api/session/guest")
    assert refused.status_code == 403 and "guest sessions are disabled" in refused.text
    assert defaults_api.settings.cookie_secure is True


def test_a_foreign_host_is_refused_and_names_and_addresses_we_serve_are_not(defaults_api: ApiServer) -> None:
    port = defaults_api.url.rsplit(":", 1)[1]
    c = defaults_api.client()
    foreign = c.get("/api/agents", headers={"Host": f"rebind.attacker.example:{port}", **ADMIN})
    assert foreign.status_code == 400 and "AGENTRY_TRUSTED_HOSTS" in foreign.text
    # A write with a matching Origin is refused just the same: the name decides, not the Origin.
    forged = c.post(
        "/api/agents",
        json=AGENT,
        headers={"Host": "rebind.attacker.example", "Origin": "http://rebind.attacker.example", **ADMIN},
    )
    assert forged.status_code == 400
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "10.96.0.17"):  # names we serve, IP literals
        assert c.get("/api/agents", headers={"Host": host, **ADMIN}).status_code == 200, host


def test_an_unauthenticated_huge_body_is_refused_before_it_is_read(defaults_api: ApiServer) -> None:
    c = defaults_api.client()
    limit = defaults_api.settings.max_body_bytes
    declared = c.post(
        "/api/agents", content=b"{" + b" " * (40 * 2**20) + b"}", headers={"content-type": "application/json"}
    )
    assert declared.status_code == 413 and str(limit) in declared.text

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes received are counted
        yield b'{"metadata": {"name": "'
        for _ in range(64):
            yield b"a" * 2**20
        yield b'"}}'

    streamed = c.post("/api/agents", content=chunks(), headers={"content-type": "application/json", **ADMIN})
    assert streamed.status_code == 413
    assert c.get("/healthz").status_code == 200  # still serving


def test_no_secret_may_be_referenced_by_default(defaults_api: ApiServer) -> None:
    c = defaults_api.client(headers=ADMIN)
    spec = {
        **AGENT["spec"],
        "secrets": [{"env": "X", "secretKeyRef": {"name": "llm-keys", "key": "anthropic"}}],
    }
    r = c.post("/api/agents", json={**AGENT, "spec": spec})
    assert r.status_code == 422, r.text
    assert "llm-keys" in r.text and "allowed: none" in r.text
    assert httpx.codes.is_success(c.post("/api/agents", json=AGENT).status_code)
