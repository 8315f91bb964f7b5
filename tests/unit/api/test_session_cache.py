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
