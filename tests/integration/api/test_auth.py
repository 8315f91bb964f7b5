"""Guest sessions (signed HttpOnly cookie), API tokens (stored hashed), OIDC bearer tokens (JWKS)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.cloud import firestore

from agentry_localcluster.kube import ControlPlane

from .oidc import AUDIENCE, ISSUER, Issuer, api_trusting_issuer
from .server import ApiServer, api_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def oidc_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[tuple[ApiServer, Issuer]]:
    with api_trusting_issuer(
        lambda issuer: api_settings(
            firestore_project,
            namespace,
            str(kube.kubeconfig),
            oidc_issuer=ISSUER,
            oidc_audience=AUDIENCE,
            oidc_jwks_url=issuer.jwks_url,
            watch=False,
        )
    ) as pair:
        yield pair


def test_guest_session_is_a_signed_httponly_cookie(api: ApiServer) -> None:
    c = api.client()
    r = c.post("/api/session/guest")
    assert r.status_code == 201
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    me = c.get("/api/me").json()
    assert me["kind"] == "guest" and me["via"] == "cookie" and me["id"] == r.json()["id"]
    # A tampered cookie is nobody.
    value = c.cookies["agentry_session"]
    payload, stamp, signature = value.split(".")
    tampered = f"{payload}.{stamp}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    forged = api.client(cookies={"agentry_session": tampered})
    assert forged.get("/api/me").status_code == 401
    # The dashboard creates a guest session on a first visit.
    page = api.client().get("/")
    assert page.status_code == 200 and "agentry_session" in page.headers.get("set-cookie", "")
    # A cookie-authenticated write from another origin is refused (CSRF).
    r = c.post("/api/tokens", json={"name": "x"}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
    assert c.post("/api/tokens", json={"name": "x"}, headers={"Origin": api.url}).status_code == 201


def test_api_tokens_are_shown_once_stored_hashed_and_revocable(api: ApiServer) -> None:
    c = api.guest()
    me = c.get("/api/me").json()["id"]
    created = c.post("/api/tokens", json={"name": "ci"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert token.startswith("agt_") and created.json()["prefix"] == token[:8]
    listed = c.get("/api/tokens").json()["items"]
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]

    bearer = api.client(headers={"Authorization": f"Bearer {token}"})
    # A guest's token is still a guest (its quotas follow the user, not the credential).
    assert bearer.get("/api/me").json() == {"id": me, "kind": "guest", "via": "token"}

    # Firestore holds a hash, never the token.
    db = firestore.Client(project=api.settings.google_cloud_project)
    stored = [d.to_dict() | {"_id": d.id} for d in db.collection("tokens").stream()]
    assert stored and all(token not in json.dumps(d, default=str) for d in stored)
    for collection in ("users", "events"):
        assert all(
            token not in json.dumps(d.to_dict(), default=str) for d in db.collection(collection).stream()
        )

    assert c.delete(f"/api/tokens/{listed[0]['id']}").status_code == 204
    r = bearer.get("/api/me")
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    assert api.client(headers={"Authorization": "Bearer agt_nope"}).get("/api/me").status_code == 401
    assert api.client(headers={"Authorization": "Basic abc"}).get("/api/me").status_code == 401
    # Another user cannot revoke it.
    other = api.guest()
    token2 = c.post("/api/tokens", json={"name": "two"}).json()
    assert other.delete(f"/api/tokens/{token2['id']}").status_code == 404


def test_oidc_bearer_tokens_are_verified(oidc_api: tuple[ApiServer, Issuer]) -> None:
    api, issuer = oidc_api
    ok = api.client(headers={"Authorization": f"Bearer {issuer.token(email='alice@example.com')}"})
    me = ok.get("/api/me")
    assert me.status_code == 200 and me.json()["kind"] == "oidc" and me.json()["via"] == "oidc"
    # The same subject is the same user on the next token; another subject is another user.
    again = api.client(headers={"Authorization": f"Bearer {issuer.token()}"}).get("/api/me").json()
    assert again["id"] == me.json()["id"]
    bob = api.client(headers={"Authorization": f"Bearer {issuer.token(sub='bob')}"}).get("/api/me").json()
    assert bob["id"] != me.json()["id"]

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "expired": issuer.token(exp=int(time.time()) - 3600),
        "audience": issuer.token(aud="someone-else"),
        "issuer": issuer.token(iss="https://evil.test"),
        "signature": issuer.token(key=other_key),
        "algorithm": issuer.token(alg="none"),
        "malformed": "not.a.jwt",
    }
    for why, token in refused.items():
        r = api.client(headers={"Authorization": f"Bearer {token}"}).get("/api/me")
        assert r.status_code == 401, why
        assert "not accepted" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer", why
