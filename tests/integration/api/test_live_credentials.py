"""Credentials are checked for as long as they are used (docs/api.md, "Live channels"): an open event
stream and a chat socket end within seconds of sign-out, token revocation, token expiry or the user's
deletion, on the replica that ended the credential and on the others, and nothing published after the
end reaches them; a chat frame is authorized when it arrives, not only at connect.

The real API (uvicorn) on the Firestore emulator. Events are appended to Firestore directly, as another
replica's write would be, so no cluster work is needed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from google.cloud import firestore
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from agentry_api.storage import Store, new_client
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually, patient

from .helpers import SseReader
from .server import ApiServer, api_settings, serve, start_api
from .test_chat import API_KEY, FakeAnthropic

pytestmark = pytest.mark.integration

ENDINGS = ["signed out", "token revoked", "token expired", "user deleted"]
END_WITHIN = 10.0  # how long a test waits for an end to reach a channel (scaled by patient())


@dataclass
class Signed:
    """A channel's credential (a client carrying it), its user, and how the test ends it."""

    client: httpx.Client
    user: str
    end: Callable[[], None]

    def headers(self) -> dict[str, str]:
        bearer = self.client.headers.get("authorization")
        if bearer:
            return {"Authorization": bearer}
        return {"Cookie": f"agentry_session={self.client.cookies['agentry_session']}"}


def gone(r: httpx.Response) -> None:
    assert r.status_code == 204, r.text


def signed_in(api: ApiServer, ending: str) -> Signed:
    """A fresh guest's credential that `ending` ends: its session cookie, or an API token of theirs."""
    guest = api.guest()
    user = guest.get("/api/me").json()["id"]
    if ending == "signed out":
        return Signed(guest, user, lambda: gone(guest.delete("/api/session")))
    if ending == "user deleted":
        return Signed(guest, user, lambda: gone(guest.delete("/api/me")))
    body: dict[str, Any] = {"name": "cli"}
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=patient(3))
    if ending == "token expired":
        body["expiresAt"] = expires.isoformat()
    token = guest.post("/api/tokens", json=body).json()
    bearer = api.client(headers={"Authorization": f"Bearer {token['token']}"})
    if ending == "token expired":
        return Signed(
            bearer, user, lambda: time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()))
        )
    return Signed(bearer, user, lambda: gone(guest.delete(f"/api/tokens/{token['id']}")))


def publish(api: ApiServer, user: str, note: str) -> None:
    """An event for `user`, appended to Firestore as any replica's write is."""

    async def append() -> None:
        store = Store(new_client(api.settings.google_cloud_project, api.settings.firestore_database))
        try:
            await store.append_event(user, "note", {"note": note})
        finally:
            await store.close()

    asyncio.run(append())


def leases(api: ApiServer, user: str) -> dict[str, Any]:
    db = firestore.Client(project=api.settings.google_cloud_project)
    try:
        doc = db.collection("users").document(user).get().to_dict() or {}
    finally:
        db.close()  # type: ignore[no-untyped-call]
    streams: dict[str, Any] = doc.get("streams") or {}
    return streams


def rest_of(stream: SseReader) -> list[dict[str, Any]]:
    """What an ended stream still had for the test, after what it already read."""
    got = []
    while not stream.queue.empty():
        got.append(stream.next(1))
    return got


def socket(api: ApiServer, signed: Signed) -> ClientConnection:
    return ws_connect(api.url.replace("http", "ws") + "/api/chat", additional_headers=signed.headers())


def frame(ws: ClientConnection) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ws.recv(timeout=patient(10)))
    return data


def closed(ws: ClientConnection) -> tuple[int, str]:
    """How the server closed the socket. A frame instead is a failure: nothing follows an end."""
    with pytest.raises(ConnectionClosed) as info:
        got = ws.recv(timeout=patient(END_WITHIN))
        raise AssertionError(f"a frame instead of the close: {got!r}")
    rcvd = info.value.rcvd
    assert rcvd is not None, "the connection dropped without a close frame"
    return rcvd.code, rcvd.reason


@pytest.fixture
def live_api(firestore_project: str, namespace: str, kube: ControlPlane, crds: None) -> Iterator[ApiServer]:
    """One replica with the default re-check period, no watcher and no model."""
    yield from serve(api_settings(firestore_project, namespace, str(kube.kubeconfig), watch=False))


@pytest.mark.parametrize("ending", ENDINGS)
def test_an_event_stream_ends_when_its_credential_does(live_api: ApiServer, ending: str) -> None:
    signed = signed_in(live_api, ending)
    stream = SseReader(signed.client)
    try:
        assert stream.status == 200 and stream.next()["event"] == "snapshot"
        publish(live_api, signed.user, "before")
        stream.until(lambda e: e["data"].get("note") == "before")
        signed.end()
        publish(live_api, signed.user, "after")  # created after the end: it must never arrive
        assert stream.done.wait(patient(END_WITHIN)), f"{ending}: the stream is still open"
        rest = rest_of(stream)
        assert [e["event"] for e in rest] == ["end"], rest
        assert rest[0]["data"]["kind"] == "end" and rest[0]["data"]["reason"], rest
    finally:
        stream.close()
    # The stream's slot is given back as for any closed stream.
    eventually(lambda: live_api.state.sse_open == 0, what="the ended stream uncounted")
    eventually(lambda: not leases(live_api, signed.user), what="the ended stream's lease given back")


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_chat_socket_closes_with_4401_when_its_credential_ends(live_api: ApiServer, ending: str) -> None:
    signed = signed_in(live_api, ending)
    with socket(live_api, signed) as ws:
        assert frame(ws)["type"] == "hello"
        assert frame(ws)["code"] == "LLM_REQUIRED"  # no model here: the socket is idle from now on
        signed.end()
        code, reason = closed(ws)
    assert code == 4401 and reason, (code, reason)


@pytest.fixture
def model() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.http.shutdown()


@pytest.fixture
def quiet_replicas(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, model: FakeAnthropic
) -> Iterator[list[ApiServer]]:
    """Two replicas that tell each other nothing (no datagrams, no listeners) and re-check an idle
    channel only every 10 minutes: what one ends, the other learns only by asking."""
    settings = api_settings(
        firestore_project,
        namespace,
        str(kube.kubeconfig),
        watch=False,
        peer_wake=False,
        sse_listen=False,
        credential_check_seconds=600,
        anthropic_api_key=API_KEY,
        anthropic_base_url=model.url,
    )
    servers = [start_api(settings), start_api(settings)]
    yield servers
    for server in servers:
        server.stop()


def test_a_chat_frame_sent_after_revocation_is_refused_not_acted_on(
    quiet_replicas: list[ApiServer], model: FakeAnthropic
) -> None:
    a, b = quiet_replicas
    owner = b.guest()
    token = owner.post("/api/tokens", json={"name": "cli"}).json()
    signed = Signed(a.client(headers={"Authorization": f"Bearer {token['token']}"}), "", lambda: None)
    model.answer("What should the agent do?")
    with socket(a, signed) as ws:
        assert frame(ws)["type"] == "hello"
        ws.send(json.dumps({"type": "message", "text": "an agent for the news"}))
        assert frame(ws)["type"] == "message"  # acted on while the token holds
        gone(owner.delete(f"/api/tokens/{token['id']}"))  # on replica B: A is not told
        ws.send(json.dumps({"type": "message", "text": "make it daily"}))
        code, reason = closed(ws)
    assert code == 4401 and "revoked" in reason, (code, reason)
    assert len(model.requests) == 1, "the frame sent after the revocation reached the model"


NOTICES: dict[str, dict[str, Any]] = {
    # Only the other replica's datagram can end the channels in time (no listeners, no re-check).
    "datagram": {"sse_listen": False, "credential_check_seconds": 600},
    # Only the revocation listener (sessions ended anywhere) can.
    "listener": {"peer_wake": False, "credential_check_seconds": 600},
    # No notice at all: the periodic re-check, at most its period late.
    "re-check": {"peer_wake": False, "sse_listen": False, "credential_check_seconds": 1},
}


@pytest.fixture(params=list(NOTICES))
def replicas(
    request: pytest.FixtureRequest, firestore_project: str, namespace: str, kube: ControlPlane, crds: None
) -> Iterator[list[ApiServer]]:
    settings = api_settings(
        firestore_project, namespace, str(kube.kubeconfig), watch=False, **NOTICES[request.param]
    )
    servers = [start_api(settings), start_api(settings)]
    a, b = servers
    if request.param == "datagram":
        pa, pb = a.state.bus.peers, b.state.bus.peers
        eventually(lambda: pb.id in pa.peers and pa.id in pb.peers, 15, "each replica registered and seen")
    if request.param == "listener":
        eventually(lambda: b.state.revocations.snapshots > 0, what="replica B's revocation listener")
    yield servers
    for server in servers:
        server.stop()


def test_a_sign_out_on_one_replica_ends_the_stream_and_the_socket_held_on_another(
    replicas: list[ApiServer],
) -> None:
    a, b = replicas
    alice = a.guest()
    on_b = b.client()
    on_b.cookies.update(alice.cookies)
    signed = Signed(on_b, alice.get("/api/me").json()["id"], lambda: gone(alice.delete("/api/session")))
    stream = SseReader(on_b)
    try:
        with socket(b, signed) as ws:
            assert frame(ws)["type"] == "hello"
            assert frame(ws)["code"] == "LLM_REQUIRED"
            assert stream.status == 200 and stream.next()["event"] == "snapshot"
            signed.end()  # on replica A
            code, reason = closed(ws)
            assert code == 4401 and reason, (code, reason)
        assert stream.done.wait(patient(END_WITHIN)), "the stream on B is still open"
        assert [e["event"] for e in rest_of(stream)] == ["end"]
    finally:
        stream.close()
    eventually(lambda: not leases(b, signed.user), what="the ended stream's lease given back")
