"""The session cache: fresh entries only, live sessions only, dropped by id, by session and by user."""

from __future__ import annotations

import pytest

from agentry_api import session_cache
from agentry_api.session_cache import SessionCache
from agentry_api.storage.sessions import session_key

pytestmark = pytest.mark.unit


def test_entries_expire_and_are_dropped_by_key_session_or_user(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(session_cache.time, "monotonic", lambda: clock[0])
    cache = SessionCache(10)
    cache.put("s1", {"userId": "alice"})
    cache.put("s2", {"userId": "alice"})
    cache.put("s3", {"userId": "bob"})
    assert cache.get("s1") == {"userId": "alice"}
    clock[0] += 10
    assert cache.get("s1") is None  # ttl reached
    clock[0] -= 10
    cache.drop([session_key("s3")])  # what the revocation listener hands over: document ids
    assert cache.get("s3") is None and cache.get("s2") is not None
    cache.drop_user("alice")
    assert cache.get("s1") is None and cache.get("s2") is None
    cache.put("s4", {"userId": "carol"})
    cache.drop_session("s4")
    assert cache.get("s4") is None


def test_a_zero_ttl_keeps_nothing() -> None:
    cache = SessionCache(0)
    cache.put("s1", {"userId": "alice"})
    assert cache.get("s1") is None


def test_a_younger_copy_can_be_asked_for_ended_ones_are_not_kept_and_tokens_are_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(session_cache.time, "monotonic", lambda: clock[0])
    cache = SessionCache(10)
    cache.put("s1", {"userId": "alice"})
    cache.put_token("h1", {"userId": "alice"})
    clock[0] += 3
    assert cache.get("s1", max_age=5) is not None and cache.get("s1", max_age=3) is None
    assert cache.get_token("h1") is not None and cache.get("h1") is None
    cache.put("s1", {"userId": "alice", "revoked": True})  # a read that saw it end
    cache.put_token("h1", None)  # revoked tokens read as None
    assert cache.get("s1") is None and cache.get_token("h1") is None
    cache.put("s2", {"userId": "bob"})
    assert cache.drop([session_key("s2"), "not-cached"]) == {"bob"}  # whose channels to wake
