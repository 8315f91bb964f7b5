"""The wake-up datagrams between API processes: sealed and opened with the shared key; a forged,
altered, stale or repeated one wakes nobody; many users split under the size limit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import pytest

from agentry_api.services import peers
from agentry_api.services.peers import MAX_DATAGRAM, TAG_BYTES, PeerWake, peer_key, seal, unseal
from agentry_api.storage.peers import PeerStore

pytestmark = pytest.mark.unit

KEY = peer_key("the-session-secret")
NOW = 1_800_000_000.0


def test_a_sealed_datagram_opens_with_the_key_only_and_while_recent() -> None:
    [datagram] = seal(KEY, ["alice", "bob"], NOW)
    assert unseal(KEY, datagram, NOW + 1) == ["alice", "bob"]
    assert unseal(peer_key("another-secret"), datagram, NOW) is None
    assert peer_key("another-secret") != KEY and len(KEY) == 32
    altered = datagram.replace(b"alice", b"alicf")
    assert unseal(KEY, altered, NOW) is None
    assert unseal(KEY, datagram, NOW + 31) is None and unseal(KEY, datagram, NOW - 31) is None
    assert unseal(KEY, b"x" * TAG_BYTES, NOW) is None  # nothing signed
    assert unseal(KEY, b"x" * (MAX_DATAGRAM + 1), NOW) is None


def test_a_signed_body_that_is_not_ours_wakes_nobody() -> None:
    for body in (b"not json", b'{"t": "soon", "u": ["a"]}', b'{"t": 1800000000000, "u": "a"}'):
        assert unseal(KEY, body + hmac.new(KEY, body, hashlib.sha256).digest(), NOW) is None
    body = json.dumps({"t": int(NOW * 1000), "u": ["a", 7, None]}).encode()
    assert unseal(KEY, body + hmac.new(KEY, body, hashlib.sha256).digest(), NOW) == ["a"]


def test_many_users_split_into_datagrams_under_the_limit() -> None:
    users = [f"user-{i:04d}-{'x' * 40}" for i in range(200)]
    datagrams = seal(KEY, [*users, "y" * MAX_DATAGRAM], NOW)  # the last cannot fit any datagram
    assert len(datagrams) > 1 and all(len(d) <= MAX_DATAGRAM for d in datagrams)
    opened = [u for d in datagrams for u in unseal(KEY, d, NOW) or []]
    assert opened == users


def test_a_datagram_is_accepted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers.time, "time", lambda: NOW)
    woken: list[list[str]] = []
    wake = PeerWake(PeerStore.__new__(PeerStore), KEY, "127.0.0.1")
    wake._wake = woken.append
    [datagram] = seal(KEY, ["alice"], NOW)
    wake.received(datagram)
    wake.received(datagram)  # replayed
    wake.received(seal(peer_key("forged"), ["bob"], NOW)[0])
    assert woken == [["alice"]]


def test_an_address_that_cannot_be_bound_leaves_the_wake_ups_off(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        wake = PeerWake(PeerStore.__new__(PeerStore), KEY, "192.0.2.1")  # not this machine's (TEST-NET-1)
        await wake.start(lambda users: None)
        wake.send(["alice"])  # nothing to send on, and no error
        await wake.stop()

    with caplog.at_level("WARNING", logger="agentry.api.peers"):
        asyncio.run(scenario())
    assert "peer wake-ups off: cannot bind 192.0.2.1" in caplog.text


def test_an_ended_credential_is_announced_apart_from_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers.time, "time", lambda: NOW)
    woken: list[list[str]] = []
    ended: list[list[str]] = []
    wake = PeerWake(PeerStore.__new__(PeerStore), KEY, "127.0.0.1")
    wake._wake, wake._ended = woken.append, ended.append
    [notice] = seal(KEY, ["alice"], NOW, ended=True)
    wake.received(notice)
    wake.received(seal(KEY, ["bob"], NOW)[0])
    assert ended == [["alice"]] and woken == [["bob"]]
    # A replica that predates the notice reads it as a wake-up of alice's streams: harmless.
    assert unseal(KEY, notice, NOW) == ["alice"]
