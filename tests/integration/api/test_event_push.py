"""Events across replicas and long replays: another replica's datagram, and on its own the Firestore
listener, wake a replica's streams (no polling in these tests: the poll period is longer than the
test), and a resumed stream replays past the page size with no gap."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from agentry_api.services.peers import peer_key, seal
from agentry_api.storage import Store, new_client
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually

from .helpers import SseReader, create_agent
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration

NO_POLL = 600.0  # longer than any test here: what arrives was pushed


def two_replicas(
    project: str, namespace: str, kube: ControlPlane, **overrides: Any
) -> Iterator[list[ApiServer]]:
    """Two API replicas on one project, without the watcher or the poll (what arrives was pushed)."""
    settings = api_settings(
        project, namespace, str(kube.kubeconfig), watch=False, sse_poll_seconds=NO_POLL, **overrides
    )
    servers = [start_api(settings), start_api(settings)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def replicas(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[list[ApiServer]]:
    """Two replicas that hear each other only through the Firestore listener."""
    yield from two_replicas(firestore_project, namespace, kube, peer_wake=False)


@pytest.fixture
def peer_replicas(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[list[ApiServer]]:
    """Two replicas that hear each other only through their datagrams (no listener)."""
    yield from two_replicas(firestore_project, namespace, kube, sse_listen=False)


def same_user_on(server: ApiServer, client: httpx.Client) -> httpx.Client:
    """The signed-in user of `client` on another replica (sessions hold across replicas)."""
    other = server.client()
    other.cookies.update(client.cookies)
    return other


def test_an_event_written_by_one_replica_reaches_a_stream_on_another(replicas: list[ApiServer]) -> None:
    a, b = replicas
    alice = a.guest()
    stream = SseReader(alice)
    try:
        assert stream.next()["event"] == "snapshot"
        eventually(lambda: a.state.bus.feed.snapshots > 0, what="replica A's listener running")
        agent = create_agent(same_user_on(b, alice), name="Written on B")
        got = stream.until(lambda e: e["data"].get("agent", {}).get("id") == agent["id"], timeout=30)
        assert got[-1]["event"] == "report" and got[-1]["data"]["action"] == "created"
        # And back: B's stream hears A.
        other = SseReader(same_user_on(b, alice))
        try:
            assert other.next()["event"] == "snapshot"
            eventually(lambda: b.state.bus.feed.snapshots > 0, what="replica B's listener running")
            second = create_agent(alice, name="Written on A")
            other.until(lambda e: e["data"].get("agent", {}).get("id") == second["id"], timeout=30)
        finally:
            other.close()
    finally:
        stream.close()
    eventually(lambda: a.state.bus.subscribers == 0, what="the closed stream unsubscribed")


def test_a_replica_wakes_the_others_streams_with_a_signed_datagram(peer_replicas: list[ApiServer]) -> None:
    a, b = peer_replicas
    pa, pb = a.state.bus.peers, b.state.bus.peers
    assert a.state.bus.feed is None and pa.port != pb.port  # each bound its own port
    eventually(lambda: pb.id in pa.peers and pa.id in pb.peers, 15, "each replica registered and seen")
    alice = a.guest()
    stream = SseReader(alice)
    try:
        assert stream.next()["event"] == "snapshot"
        received = metric("received")  # both replicas' (one process here): only A receives in this test
        agent = create_agent(same_user_on(b, alice), name="Announced by B")
        got = stream.until(lambda e: e["data"].get("agent", {}).get("id") == agent["id"], timeout=30)
        assert got[-1]["data"]["action"] == "created"
        assert metric("received") > received
        # A stranger's datagram (another key) to A's port is refused and wakes nobody.
        refused = metric("refused")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(
                seal(peer_key("not-the-secret"), [alice.get("/api/me").json()["id"]], time.time())[0],
                ("127.0.0.1", pa.port),
            )
        eventually(lambda: metric("refused") > refused, 10, "the forged datagram refused")
    finally:
        stream.close()
    b.stop()  # deletes its registration: A stops announcing to it at its next beat
    eventually(lambda: pb.id not in pa.peers, 15, "the stopped replica forgotten")


def metric(outcome: str) -> float:
    return REGISTRY.get_sample_value("agentry_api_peer_wakes_total", {"outcome": outcome}) or 0.0


def test_replay_past_the_page_size_has_no_gap_and_goes_on_live(replicas: list[ApiServer]) -> None:
    a, _ = replicas
    client = a.guest()
    user = client.get("/api/me").json()["id"]
    count = 1234  # more than two replay pages (500 each)

    async def append() -> None:
        store = Store(new_client(a.settings.google_cloud_project, a.settings.firestore_database))
        try:
            for i in range(count):
                await store.append_event(user, "note", {"i": i})
        finally:
            await store.close()

    asyncio.run(append())
    stream = SseReader(client, last_event_id="0")
    try:
        replay = stream.until(lambda e: int(e["id"]) >= count, timeout=120)
        assert [int(e["id"]) for e in replay] == list(range(1, count + 1))
        assert [e["data"]["i"] for e in replay] == list(range(count))
        live = create_agent(client, name="After the replay")
        got = stream.until(lambda e: e["data"].get("agent", {}).get("id") == live["id"])
        assert int(got[0]["id"]) == count + 1
    finally:
        stream.close()


@pytest.fixture
def caching_replicas(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[list[ApiServer]]:
    """Two replicas that keep session documents for a minute: only the revocation listener can make
    an ended session stop working on the other replica within these tests' waits."""
    yield from two_replicas(firestore_project, namespace, kube, session_cache_seconds=60)


def test_a_session_ended_on_one_replica_stops_working_on_the_other_before_its_cache_expires(
    caching_replicas: list[ApiServer],
) -> None:
    a, b = caching_replicas
    eventually(lambda: b.state.revocations.snapshots > 0, what="replica B's revocation listener")
    alice = a.guest()
    on_b = same_user_on(b, alice)
    assert on_b.get("/api/me").status_code == 200  # B has read the session, and keeps it
    kept = a.client()
    kept.cookies.update(alice.cookies)
    assert alice.delete("/api/session").status_code == 204
    assert kept.get("/api/me").status_code == 401  # on A at once: its own cache dropped it
    eventually(lambda: on_b.get("/api/me").status_code == 401, 15, "the signed-out session refused on B")

    # A browser signed in with an API token (on B) loses its session when the token is revoked on A.
    bob = a.guest()
    token = bob.post("/api/tokens", json={"name": "laptop"}).json()
    browser = b.client()
    assert browser.post("/api/session/token", json={"token": token["token"]}).status_code == 200
    assert browser.get("/api/me").status_code == 200
    assert bob.delete(f"/api/tokens/{token['id']}").status_code == 204
    eventually(lambda: browser.get("/api/me").status_code == 401, 15, "the token's session refused on B")
