"""The credential rule (credentials.py) and what asking it again costs a live channel: a store that
counts its reads, a clock the test moves, the real caches of `AppState`."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from typing import Any, cast

import pytest

from agentry_api import credentials
from agentry_api.auth import Credential, User
from agentry_api.credentials import (
    OIDC_EXPIRED,
    SESSION_ENDED,
    SESSION_EXPIRED,
    TOKEN_EXPIRED,
    TOKEN_INVALID,
    CredentialEnded,
    LiveCredential,
    oidc_expiry,
    verify,
)
from agentry_api.deps import AppState
from agentry_api.services.events import EventBus
from agentry_api.session_cache import SessionCache
from agentry_api.settings import Settings

pytestmark = pytest.mark.unit
Doc = dict[str, Any]
LATER = "2999-01-01T00:00:00.000000Z"
EARLIER = "2000-01-01T00:00:00.000000Z"


class CountingStore:
    """Sessions, tokens and users in memory; every read counted by collection."""

    def __init__(self) -> None:
        self.sessions: dict[str, Doc] = {}
        self.tokens: dict[str, Doc] = {}
        self.users: dict[str, Doc] = {"alice": {"kind": "guest"}}
        self.reads: Counter[str] = Counter()

    async def session(self, session_id: str) -> Doc | None:
        self.reads["sessions"] += 1
        doc = self.sessions.get(session_id)
        return dict(doc) if doc is not None else None

    async def token(self, token_hash: str) -> Doc | None:
        self.reads["tokens"] += 1
        doc = self.tokens.get(token_hash)
        return None if doc is None or doc.get("revoked") else dict(doc)

    async def get_user(self, user_id: str) -> Doc | None:
        self.reads["users"] += 1
        return self.users.get(user_id)


def app_state(store: CountingStore, every: float = 5.0, ttl: float = 10.0) -> AppState:
    settings = Settings(
        google_cloud_project="unit",
        session_secret="unit",
        credential_check_seconds=every,
        session_cache_seconds=ttl,
    )
    unused: Any = None
    return AppState(
        settings=settings,
        store=cast(Any, store),
        cluster=unused,
        bus=EventBus(cast(Any, store)),
        agents=unused,
        runs=unused,
        approvals=unused,
        sessions=unused,
        verifier=None,
        llm=None,
        quotas=unused,
        session_cache=SessionCache(ttl),
    )


def session_user(session_id: str = "s1") -> User:
    return User("alice", "guest", "cookie", session=session_id, credential=Credential("session", session_id))


def token_user(token_hash: str = "h1") -> User:
    return User("alice", "guest", "token", token="t1", credential=Credential("token", token_hash))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """time.monotonic, moved by the test (the caches' only clock)."""
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


def reason(state: AppState, cred: Credential, max_age: float | None = None) -> str | None:
    try:
        asyncio.run(verify(state, cred, max_age))
    except CredentialEnded as exc:
        return exc.reason
    return None


def test_the_rule_for_each_kind_of_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    store = CountingStore()
    state = app_state(store, ttl=0)
    store.sessions = {
        "live": {"userId": "alice", "expiresAt": LATER},
        "out": {"userId": "alice", "expiresAt": LATER, "revoked": True},
        "old": {"userId": "alice", "expiresAt": EARLIER},
        "orphan": {"userId": "bob", "expiresAt": LATER},
    }
    assert reason(state, Credential("session", "live")) is None
    assert reason(state, Credential("session", "out")) == SESSION_ENDED
    assert reason(state, Credential("session", "unknown")) == SESSION_ENDED
    assert reason(state, Credential("session", "old")) == SESSION_EXPIRED
    assert (
        reason(state, Credential("session", "orphan"))
        == "the session is not valid (its user no longer exists)"
    )
    store.tokens = {
        "live": {"userId": "alice", "expiresAt": None},
        "out": {"userId": "alice", "revoked": True},
        "old": {"userId": "alice", "expiresAt": EARLIER},
    }
    assert reason(state, Credential("token", "live")) is None
    assert reason(state, Credential("token", "out")) == TOKEN_INVALID
    assert reason(state, Credential("token", "old")) == TOKEN_EXPIRED
    assert reason(state, Credential("oidc", "alice", LATER)) is None
    assert reason(state, Credential("oidc", "alice", EARLIER)) == OIDC_EXPIRED
    assert reason(state, Credential("admin", "alice")) is None
    assert (
        reason(state, Credential("admin", "nobody")) == "the token is not valid (its user no longer exists)"
    )
    # An OIDC token ends with its exp plus the verifier's leeway (a minute), as requests accept it.
    assert oidc_expiry({"exp": 1_800_000_000}) == "2027-01-15T08:01:00.000000Z"
    assert oidc_expiry({}) is None


def test_channels_of_one_credential_cost_one_read_per_period_between_them(clock: list[float]) -> None:
    """100 channels of one session, each asking every second for a minute: 6,000 checks. The session
    is read once per re-check period (5 s) between them all, the user once per 30 s."""
    store = CountingStore()
    store.sessions["s1"] = {"userId": "alice", "expiresAt": LATER}
    state = app_state(store, every=5.0, ttl=10.0)
    channels = [LiveCredential(state, session_user()) for _ in range(100)]

    async def minute() -> None:
        for _ in range(60):
            for live in channels:
                assert await live.ended() is None
            clock[0] += 1.0

    asyncio.run(minute())
    assert store.reads["sessions"] == 12 and store.reads["users"] == 2, store.reads


def test_an_end_elsewhere_is_seen_within_the_period_and_an_end_here_at_once(clock: list[float]) -> None:
    store = CountingStore()
    store.tokens = {"h1": {"userId": "alice"}, "h2": {"userId": "alice"}}
    state = app_state(store, every=5.0)
    first, second = LiveCredential(state, token_user("h1")), LiveCredential(state, token_user("h2"))

    async def scenario() -> None:
        assert await first.ended() is None and await second.ended() is None
        store.tokens["h1"]["revoked"] = True  # by another replica, whose notice is lost
        clock[0] += 4.0
        assert await first.ended() is None  # its copy is younger than the period
        clock[0] += 1.0
        assert await first.ended() == TOKEN_INVALID
        # Before acting on a frame it is read afresh, whatever the copy's age.
        assert await second.ended() is None  # a fresh copy
        store.tokens["h2"]["revoked"] = True
        assert await second.ended() is None
        assert await second.ended(fresh=True) == TOKEN_INVALID
        assert await second.ended() == TOKEN_INVALID  # and an end stays an end

    asyncio.run(scenario())

    # Revoked here: the copies are dropped, so the next check sees it with no time passing.
    store.tokens["h3"] = {"userId": "alice"}
    third = LiveCredential(state, token_user("h3"))
    assert asyncio.run(third.ended()) is None
    store.tokens["h3"]["revoked"] = True
    state.credentials_ended("alice")
    assert asyncio.run(third.ended()) == TOKEN_INVALID


def test_an_expiry_needs_no_read(clock: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    store = CountingStore()
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    store.tokens["h1"] = {"userId": "alice", "expiresAt": soon}
    live = LiveCredential(app_state(store), token_user())
    assert asyncio.run(live.ended()) is None
    reads = sum(store.reads.values())
    monkeypatch.setattr(credentials, "now_iso", lambda: "2999-01-01T00:00:00.000000Z")
    assert asyncio.run(live.ended()) == TOKEN_EXPIRED
    assert sum(store.reads.values()) == reads


def test_an_idle_channel_is_woken_by_an_end_here_not_by_its_period() -> None:
    """`until_ended` with a 10-minute period returns as soon as this replica ends the credential; `idle`
    returns the reason at the period when nothing woke it."""
    store = CountingStore()
    store.sessions["s1"] = {"userId": "alice", "expiresAt": LATER}
    state = app_state(store, every=600.0)

    async def scenario() -> None:
        live = LiveCredential(state, session_user())
        waiting = asyncio.create_task(live.until_ended())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        store.sessions["s1"]["revoked"] = True
        state.credentials_ended("alice")
        assert await asyncio.wait_for(waiting, 5) == SESSION_ENDED

        store.sessions["s2"] = {"userId": "alice", "expiresAt": LATER}
        quick = app_state(store, every=0.05)
        other = LiveCredential(quick, session_user("s2"))
        with quick.bus.subscribe("alice") as sub:
            sub.arm()
            assert await other.idle(sub, 0.2) is None  # nothing happened: the poll's time is up
            store.sessions["s2"]["revoked"] = True
            assert await asyncio.wait_for(other.idle(sub, 3600), 5) == SESSION_ENDED

    asyncio.run(scenario())
