"""Pure parts of the API: tokens and sessions, OIDC claim checks, cursors, drafts, policy.

Usage aggregation runs on the Firestore emulator: tests/integration/api/test_usage_firestore.py."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from agentry_api.auth import Sessions, hash_token, new_token, oidc_user_id, owner_label
from agentry_api.deps import same_origin
from agentry_api.oidc import InvalidToken, check_claims, split_token
from agentry_api.routers.events import parse_event_id, report
from agentry_api.services.agents import AgentService, slug
from agentry_api.services.designer import diff, draft_to_agent, extract_draft
from agentry_api.services.errors import Invalid
from agentry_api.services.runs import decode_cursor, encode_cursor
from agentry_api.services.views import execution_view, iso
from agentry_api.settings import Settings
from agentry_common.models import AgentSpec

pytestmark = pytest.mark.unit


def test_tokens_are_random_and_only_their_hash_is_kept() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("agt_") and len(a) > 40
    assert hash_token(a) == hash_token(a) != hash_token(b) and a not in hash_token(a)
    assert owner_label("u1") != "u1" and len(owner_label("u1")) == 16
    assert oidc_user_id("iss", "sub") != oidc_user_id("iss", "sub2")


def test_sessions_are_signed_and_expire() -> None:
    sessions = Sessions("secret", max_age=60)
    cookie = sessions.dump("g-1")
    assert sessions.load(cookie) == "g-1"
    payload, stamp, signature = cookie.split(".")
    forged_payload = Sessions("attacker", 60).dump("admin").split(".")[0]
    assert sessions.load(f"{forged_payload}.{stamp}.{signature}") is None
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert sessions.load(f"{payload}.{stamp}.{flipped}") is None
    assert Sessions("other", 60).load(cookie) is None
    assert sessions.load(None) is None and sessions.load("x" * 5000) is None
    old = Sessions("secret", max_age=1)
    stale = old.dump("g-2")
    time.sleep(2.1)
    assert old.load(stale) is None


CLAIMS = {"iss": "https://i", "aud": "a", "sub": "s"}  # valid for a minute from when a test checks them


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"iss": "https://other"}, "issuer"),
        ({"aud": "b"}, "audience"),
        ({"aud": ["b", "c"]}, "audience"),
        ({"exp": time.time() - 3600}, "expired"),
        ({"exp": "tomorrow"}, "expired"),
        ({"nbf": time.time() + 3600}, "not valid yet"),
        ({"sub": ""}, "subject"),
    ],
)
def test_oidc_claims_are_checked(change: dict[str, Any], reason: str) -> None:
    now = time.time()
    claims = {**CLAIMS, "exp": now + 60}
    check_claims(claims, "https://i", "a", now)
    check_claims({**claims, "aud": ["x", "a"]}, "https://i", "a", now)
    with pytest.raises(InvalidToken, match=reason):
        check_claims({**claims, **change}, "https://i", "a", now)


def test_malformed_tokens_are_refused_without_echoing_them() -> None:
    for token in ("", "a.b", "a.b.c.d", "!!!.???.###", "e30.bm90IGpzb24.x"):
        with pytest.raises(InvalidToken) as err:
            split_token(token)
        assert token not in str(err.value) or not token


def test_cursors_round_trip_and_garbage_is_a_422() -> None:
    cursor = encode_cursor({"createdAt": "2026-01-01T00:00:00.000000Z", "id": "x-1"})
    assert decode_cursor(cursor) == ("2026-01-01T00:00:00.000000Z", "x-1")
    for bad in ("garbage!", "e30", "WzFd"):
        with pytest.raises(Invalid) as err:
            decode_cursor(bad)
        assert err.value.loc == ["query", "cursor"]


def test_event_ids() -> None:
    assert parse_event_id("12") == 12 and parse_event_id(" 7 ") == 7
    assert parse_event_id(None) is parse_event_id("-1") is parse_event_id("abc") is None
    assert parse_event_id("9" * 30) is None


def test_a_report_carries_its_events_time_beside_the_payloads_own_created_at() -> None:
    data = {"action": "status", "execution": "r1", "phase": "Running", "createdAt": "2026-11-26T10:00:00Z"}
    event = {"kind": "execution", "seq": 4, "createdAt": "2026-11-26T10:00:07Z", "data": data}
    sent = report(event)
    body = json.loads(str(sent.data))
    assert body["eventTime"] == "2026-11-26T10:00:07Z" and body["createdAt"] == "2026-11-26T10:00:00Z"
    assert (sent.event, sent.id, body["seq"], body["phase"]) == ("report", "4", 4, "Running")
    plain = json.loads(str(report({**event, "data": {"action": "deleted"}}).data))
    assert plain["createdAt"] == plain["eventTime"] == "2026-11-26T10:00:07Z"


def test_drafts_are_extracted_converted_and_diffed() -> None:
    text = 'Sure.\n```json\n{"name": "N", "instructions": "Do it", "tools": ["files"], "schedule": null}\n```'
    draft = extract_draft(text)
    assert draft == {"name": "N", "instructions": "Do it", "tools": ["files"], "schedule": None}
    assert extract_draft("no json here") is None
    assert extract_draft('```json\n{"no": "instructions"}\n```') is None
    agent = draft_to_agent(draft, "claude-sonnet-4-6")
    assert agent == {
        "name": "N",
        "spec": {"instructions": "Do it", "tools": ["files"], "model": {"name": "claude-sonnet-4-6"}},
    }
    changes = diff({"name": "N", "spec": {"instructions": "Old"}}, agent)
    assert {c["field"] for c in changes} == {"instructions", "tools", "model"}
    assert diff(None, agent)[0]["before"] is None


def test_policy_refuses_unlisted_secrets_endpoints_and_keys() -> None:
    service = AgentService(None, None, None, Settings(allowed_secret_names=["llm-keys"]))  # type: ignore[arg-type]
    ok = AgentSpec.model_validate(
        {
            "instructions": "x",
            "model": {"name": "m"},
            "secrets": [{"env": "K", "secretKeyRef": {"name": "llm-keys", "key": "k"}}],
        }
    )
    service.check_policy(ok)
    cases = [
        (
            {"secrets": [{"env": "K", "secretKeyRef": {"name": "other", "key": "k"}}]},
            ["secrets", 0, "secretKeyRef", "name"],
        ),
        (
            {"secrets": [{"env": "K", "secretManager": "projects/p/secrets/s"}]},
            ["secrets", 0, "secretManager"],
        ),
        ({"model": {"name": "m", "baseURL": "http://x"}}, ["model", "baseURL"]),
        (
            {"model": {"name": "m", "fallbacks": [{"name": "f", "baseURL": "http://y"}]}},
            ["model", "fallbacks", 0, "baseURL"],
        ),
        ({"instructions": "use sk-ant-" + "a" * 30}, ["instructions"]),
    ]
    for change, loc in cases:
        spec = AgentSpec.model_validate({"instructions": "x", "model": {"name": "m"}, **change})
        with pytest.raises(Invalid) as err:
            service.check_policy(spec)
        assert err.value.loc == ["body", "spec", *loc], change


def test_names_and_views() -> None:
    assert slug("Weekly Stock Summary!") == "weekly-stock-summary" and slug("---") == "agent"
    assert len(slug("x" * 100)) == 40
    assert iso("2026-01-02T03:04:05Z") == "2026-01-02T03:04:05.000000Z" and iso("nope") is None
    view = execution_view({"status": {"phase": "Running", "jobName": "j", "unknown": 1}})
    assert view["phase"] == "Running" and view["jobName"] == "j" and "unknown" not in view
    assert execution_view({})["phase"] == "Pending"


def _conn(headers: dict[str, str], kind: str = "http") -> HTTPConnection:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return HTTPConnection({"type": kind, "headers": raw, "method": "POST", "path": "/"})


def test_same_origin() -> None:
    assert same_origin(_conn({"host": "a:1"}))
    assert same_origin(_conn({"host": "a:1", "origin": "http://a:1"}))
    assert not same_origin(_conn({"host": "a:1", "origin": "http://evil"}))
    assert not same_origin(_conn({"host": "a:1", "origin": "null"}))
    assert not same_origin(_conn({"host": "a:1", "sec-fetch-site": "cross-site"}))
