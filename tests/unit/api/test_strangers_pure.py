"""Pure parts of issue 18 ("safe for strangers"): settings that refuse to start, OIDC allow-lists,
pagination, quotas' windows, the watcher's ownership check, error bodies and security headers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from agentry_api.auth import Sessions
from agentry_api.credentials import expired
from agentry_api.deps import email_allowed, role_of, stale
from agentry_api.main import create_app, csp_for, request_id_of
from agentry_api.routers.session import client_address
from agentry_api.services.errors import Invalid
from agentry_api.services.paging import MAX_OFFSET, offset_of, page
from agentry_api.services.quotas import ACTIVE_PHASES, utc_day_start
from agentry_api.services.runs import same_run
from agentry_api.settings import Settings

pytestmark = pytest.mark.unit


def test_an_oidc_issuer_without_an_audience_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="AGENTRY_OIDC_AUDIENCE"):
        Settings(oidc_issuer="https://issuer.test", oidc_jwks_url="https://issuer.test/jwks")
    Settings(oidc_issuer="https://issuer.test", oidc_audience="agentry")  # with one: fine


def test_guests_have_lower_limits_than_users() -> None:
    settings = Settings()
    guest, user = settings.limits_of("guest"), settings.limits_of("oidc")
    for name, value in guest.model_dump().items():
        assert value <= getattr(user, name), name
    assert guest.agents < user.agents and guest.concurrent_runs < user.concurrent_runs
    assert settings.limits_of("admin") == user


def test_oidc_allow_lists_need_a_verified_email() -> None:
    open_server = Settings()
    assert email_allowed(open_server, {"sub": "x"})  # no list: everyone the issuer vouches for
    settings = Settings(oidc_allowed_emails=["Boss@Corp.example"], oidc_allowed_domains=["team.example"])
    assert email_allowed(settings, {"email": "boss@corp.example", "email_verified": True})
    assert email_allowed(settings, {"email": "ann@team.example", "email_verified": True})
    assert not email_allowed(settings, {"email": "ann@team.example", "email_verified": False})
    assert not email_allowed(settings, {"email": "ann@team.example"})
    assert not email_allowed(settings, {"email": "ann@evil-team.example", "email_verified": True})
    assert not email_allowed(settings, {"email": "ann@team.example.evil", "email_verified": True})
    assert not email_allowed(settings, {"sub": "no-email"})


def test_guests_stay_guests_whatever_they_sign_in_with() -> None:
    assert role_of("guest") == "guest" and role_of("admin") == "admin"
    assert role_of("oidc") == "user" and role_of("user") == "user"


def test_expiry_and_last_used_throttle() -> None:
    now = dt.datetime.now(dt.UTC)

    def fmt(when: dt.datetime) -> str:
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    assert expired(fmt(now - dt.timedelta(seconds=1))) and not expired(fmt(now + dt.timedelta(hours=1)))
    assert not expired(None)
    assert stale(None) and stale(fmt(now - dt.timedelta(minutes=2)))
    assert not stale(fmt(now - dt.timedelta(seconds=5)))


def test_the_cookie_names_a_session_not_a_user() -> None:
    sessions = Sessions("secret", 60)
    assert sessions.load(sessions.dump("sid-1")) == "sid-1"
    # A cookie of the old format (a signed user id) is nobody.
    from itsdangerous import URLSafeTimedSerializer

    old = URLSafeTimedSerializer("secret", salt="agentry-session").dumps({"u": "g-1"})
    assert sessions.load(old) is None


def test_pages_are_bounded() -> None:
    items = list(range(7))
    assert page(items, 0, 3) == ([0, 1, 2], "3")
    assert page(items, 3, 3) == ([3, 4, 5], "6")
    assert page(items, 6, 3) == ([6], None)
    assert offset_of(None) == 0 and offset_of("6") == 6
    for bad in ("-1", "x", str(MAX_OFFSET + 1), "1e3"):
        with pytest.raises(Invalid):
            offset_of(bad)


def test_runs_per_day_is_a_utc_day_and_only_unfinished_runs_are_concurrent() -> None:
    seoul = dt.timezone(dt.timedelta(hours=9))
    start = utc_day_start(dt.datetime(2026, 11, 24, 3, 0, tzinfo=seoul))
    assert start == dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.UTC)
    assert set(ACTIVE_PHASES) == {"Pending", "WaitingApproval", "Running"}


def test_an_execution_reusing_a_stored_runs_name_is_not_mirrored_into_it() -> None:
    run = {"id": "x-abc", "userId": "alice", "agentId": "digest-1"}
    assert same_run(run, "digest-1", {"id": "digest-1", "userId": "alice"})
    assert same_run(run, "digest-1", None)  # the agent was deleted since: still that run
    assert not same_run(run, "mallorys-agent", {"id": "mallorys-agent", "userId": "mallory"})
    assert not same_run(run, "digest-1", {"id": "digest-1", "userId": "mallory"})  # name reused


def scope(path: str = "/", headers: list[tuple[bytes, bytes]] | None = None, peer: str = "10.0.0.9") -> Any:
    return {"type": "http", "path": path, "headers": headers or [], "client": (peer, 1234)}


def test_security_headers_and_request_ids() -> None:
    page_csp = csp_for(scope(headers=[(b"host", b"agentry.example")]), b"text/html; charset=utf-8").decode()
    assert "script-src 'self'" in page_csp and "frame-ancestors 'none'" in page_csp
    assert "unsafe-inline" not in page_csp and "wss://agentry.example" in page_csp
    assert csp_for(scope(), b"application/json") == b"default-src 'none'; frame-ancestors 'none'"
    assert csp_for(scope("/docs"), b"text/html") == b"frame-ancestors 'none'"
    assert request_id_of(scope(headers=[(b"x-request-id", b"abc-123")])) == "abc-123"
    for bad in (b"a b", b"<script>", b"x" * 65, "é".encode()):
        assert request_id_of(scope(headers=[(b"x-request-id", bad)])) != bad.decode("latin-1")


def test_the_client_address_behind_proxies() -> None:
    from starlette.requests import HTTPConnection

    xff = [(b"x-forwarded-for", b"1.1.1.1, 203.0.113.7, 10.0.0.1")]
    assert client_address(HTTPConnection(scope(headers=xff)), 0) == "10.0.0.9"
    assert client_address(HTTPConnection(scope(headers=xff)), 1) == "10.0.0.1"
    assert client_address(HTTPConnection(scope(headers=xff)), 2) == "203.0.113.7"
    assert client_address(HTTPConnection(scope()), 1) == "10.0.0.9"  # no header: the peer


def test_a_500_carries_a_reason_and_correlation_id_never_the_exception_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings(trusted_hosts=["testserver"], cookie_secure=True))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("db password is hunter2 at 10.1.2.3")

    client = TestClient(app, raise_server_exceptions=False)  # not entered: no lifespan, no clients
    r = client.get("/boom", headers={"X-Request-ID": "req-42"})
    assert r.status_code == 500
    body = r.json()
    assert (
        body["reason"] == "InternalError" and body["correlationId"] == "req-42" == r.headers["x-request-id"]
    )
    assert "hunter2" not in r.text and "RuntimeError" not in r.text and "10.1.2.3" not in r.text
    assert "req-42" in caplog.text and "hunter2" in caplog.text  # the log has it, with the id
    assert r.headers["strict-transport-security"].startswith("max-age=")
