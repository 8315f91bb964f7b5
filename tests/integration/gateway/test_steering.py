"""Steering inboxes through the real gateway on Google's Firestore emulator: the API's message
(a service token) into a run's inbox beside its journal, the hint every append answers, the run
reading its own queued messages (its run token; a long poll), delivery and the inbox's close in the
append's transaction, double-texting, and a message for an ended run refused as `closed`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from google.cloud import firestore

from agentry_common.checkpoints import (
    BESIDE_CALL_HEADER,
    CHECKPOINT_COLLECTION,
    CHECKPOINT_PATH,
    RIDING_HEADER,
    RIDING_STORED_HEADER,
    Entry,
    encode_riding,
    entry_json,
    sign_entry,
)
from agentry_common.governance import RUN_END_PATH, RefusalType
from agentry_common.steering import INBOX_COLLECTION, INBOX_PATH, INBOX_SEEN_HEADER, STEER_PATH, Inbox
from agentry_llm import ChatResponse, ProvidersFailed
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import eventually

from .harness import GatewayServer, ask, chain, complete, firestore_gateway, metric, run_token, svc_headers

pytestmark = pytest.mark.integration

KEY = "state-key-of-the-run"


@pytest.fixture
def gateway(firestore_project: str, llm: ScriptedLLM) -> Iterator[GatewayServer]:
    with firestore_gateway(firestore_project, llm) as gw:
        yield gw


def entries(first: int, n: int, previous: str = "") -> list[Entry]:
    out: list[Entry] = []
    for seq in range(first, first + n):
        out.append(sign_entry(KEY, previous, seq, "message", {"n": seq}, at="2026-01-01T00:00:00Z"))
        previous = out[-1].sig
    return out


JOURNAL = entries(1, 4)


def append(url: str, seqs: slice, beside: bool = False, **extra: Any) -> httpx.Response:
    body = {"entries": [e.wire() for e in JOURNAL[seqs]], **extra}
    headers = {"authorization": f"Bearer {run_token()}", **({BESIDE_CALL_HEADER: "1"} if beside else {})}
    return localhttp.post(f"{url}{CHECKPOINT_PATH}", json=body, headers=headers, timeout=30)


def steer(url: str, text: str = "", **extra: Any) -> httpx.Response:
    body = {"namespace": "team-a", "execution": "ex-1", "uid": "uid-ex-1", "text": text, "by": "ada", **extra}
    return localhttp.post(f"{url}{STEER_PATH}", json=body, headers=svc_headers(), timeout=30)


def inbox(url: str, **params: Any) -> Inbox:
    headers = {"authorization": f"Bearer {run_token()}"}
    response = localhttp.get(f"{url}{INBOX_PATH}", params=params, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return Inbox.model_validate(response.json())


def listed(url: str) -> dict[int, str]:
    params = {"namespace": "team-a", "uid": "uid-ex-1"}
    response = localhttp.get(f"{url}{STEER_PATH}", params=params, headers=svc_headers(), timeout=30)
    return {m["seq"]: m["state"] for m in response.json()["messages"]}


def test_a_message_reaches_the_run_through_the_append_hint_and_is_delivered_once(
    gateway: GatewayServer, firestore_db: firestore.Client
) -> None:
    assert append(gateway.url, slice(0, 1)).json() == {"last": 1}  # nothing queued: as before
    posted = steer(gateway.url, "Also check Friday.")
    assert posted.status_code == 202, posted.text
    message = posted.json()["message"]
    assert (message["seq"], message["state"], message["by"]) == (1, "queued", "ada")
    assert append(gateway.url, slice(1, 2)).json() == {"last": 2, "inbox": 1}
    got = inbox(gateway.url, after=0)
    assert [m.text for m in got.messages] == ["Also check Friday."] and got.last == 1
    # The append that journals the delivery marks it delivered, in its transaction.
    assert append(gateway.url, slice(2, 3), delivered=[1]).json() == {"last": 3}
    assert listed(gateway.url) == {1: "delivered"}
    head = firestore_db.collection(CHECKPOINT_COLLECTION).document("team-a.uid-ex-1")
    assert (head.get().to_dict() or {})["inboxQueued"] == []
    doc = head.collection(INBOX_COLLECTION).document("00000001").get().to_dict() or {}
    assert doc["state"] == "delivered" and doc["text"] == "Also check Friday."
    assert inbox(gateway.url, after=1).messages == []


def test_double_texting_and_the_runs_end(gateway: GatewayServer) -> None:
    append(gateway.url, slice(0, 1))
    steer(gateway.url, "one")
    replaced = steer(gateway.url, "two", pending="replace")
    assert replaced.json()["superseded"] == [1]
    rejected = steer(gateway.url, "three", pending="reject")
    assert rejected.status_code == 409 and rejected.json()["reason"] == "pending"
    # A final append with a message queued leaves the inbox open: the run goes on with it.
    assert append(gateway.url, slice(1, 2), close="idle").json() == {"last": 2, "inbox": 2}
    assert append(gateway.url, slice(2, 3), delivered=[2], close="idle").json() == {"last": 3, "closed": True}
    closed = steer(gateway.url, "after the end")
    assert closed.status_code == 409 and closed.json()["reason"] == "closed"
    assert listed(gateway.url) == {1: "superseded", 2: "delivered"}


def test_an_end_refuses_what_waits_and_an_ended_run_takes_nothing(gateway: GatewayServer) -> None:
    append(gateway.url, slice(0, 1))
    steer(gateway.url, "never delivered")
    assert append(gateway.url, slice(1, 2), close="end").json() == {"last": 2, "closed": True}
    assert listed(gateway.url) == {1: "refused"}
    # A run whose end the operator reported, without an append that closed its inbox: refused too.
    ended = {"namespace": "team-a", "execution": "ex-9", "uid": "uid-ex-9"}
    assert (
        localhttp.post(f"{gateway.url}{RUN_END_PATH}", json=ended, headers=svc_headers()).status_code == 200
    )
    late = localhttp.post(
        f"{gateway.url}{STEER_PATH}", json={**ended, "text": "hi", "by": "ada"}, headers=svc_headers()
    )
    assert late.status_code == 409 and late.json()["reason"] == "closed"


def test_a_long_poll_answers_when_a_message_comes(gateway: GatewayServer) -> None:
    append(gateway.url, slice(0, 1))
    answers: list[Inbox] = []
    waiter = threading.Thread(target=lambda: answers.append(inbox(gateway.url, after=0, wait=20)))
    waiter.start()
    time.sleep(1.5)
    assert not answers  # still waiting: nothing queued
    steer(gateway.url, interrupt=True)
    waiter.join(30)
    assert answers and [m.interrupt for m in answers[0].messages] == [True]


def test_who_may_do_what(gateway: GatewayServer) -> None:
    run_headers = {"authorization": f"Bearer {run_token()}"}
    body = {"namespace": "team-a", "execution": "ex-1", "uid": "uid-ex-1", "text": "hi", "by": "ada"}
    assert localhttp.post(f"{gateway.url}{STEER_PATH}", json=body, headers=run_headers).status_code == 403
    assert localhttp.get(f"{gateway.url}{INBOX_PATH}", headers=svc_headers()).status_code == 403
    blank = steer(gateway.url, "   ")
    assert blank.status_code == 422 and "text" in blank.text
    # Another run's token sees its own (empty) inbox, never this one's.
    steer(gateway.url, "for ex-1 only")
    other = localhttp.get(
        f"{gateway.url}{INBOX_PATH}", headers={"authorization": f"Bearer {run_token('ex-2')}"}, timeout=30
    )
    assert other.json()["messages"] == []


def test_a_runs_model_call_waits_for_a_message_queued_beyond_what_it_has_seen(
    gateway: GatewayServer, llm: ScriptedLLM
) -> None:
    """The runtime's model call names the highest inbox seq it has taken (agentry_common.steering):
    refused 409 `steering_queued` while a message is queued beyond it, before anything reaches a
    provider, and final for the runtime's chain (no retry, no fallback)."""
    llm.script([{"text": "with it", "usage": {"input_tokens": 3, "output_tokens": 1}}] * 3)

    def call(headers: dict[str, str]) -> tuple[ChatResponse, str]:
        provider_chain, events = chain(gateway.url, run_token(), [("anthropic", "claude-sonnet-4-6")])
        assert not events
        return asyncio.run(complete(provider_chain, ask().model_copy(update={"headers": headers})))

    assert call({INBOX_SEEN_HEADER: "0"})[1] == "with it"  # nothing queued: answered
    assert steer(gateway.url, "Also check Friday.").status_code == 202
    with pytest.raises(ProvidersFailed) as refused:
        call({INBOX_SEEN_HEADER: "0"})
    assert refused.value.final and refused.value.kind == RefusalType.STEERING_QUEUED
    assert "HTTP 409" in str(refused.value) and "steering message 1 is queued" in str(refused.value)
    assert len(llm.requests) == 1  # the refused call reached no provider
    assert call({INBOX_SEEN_HEADER: "1"})[1] == "with it"  # taken: answered
    # A call that names no seq (a person's designer turn, a run without a journal) is not checked.
    assert call({})[1] == "with it" and len(llm.requests) == 3


def held(url: str) -> float:
    return metric(url, "agentry_gateway_checkpoint_appends_held_total")


def test_an_append_beside_a_model_call_lets_the_call_go_first(
    gateway: GatewayServer, llm: ScriptedLLM
) -> None:
    """An append marked as sent beside the run's model call (BESIDE_CALL_HEADER) waits while a call
    is being routed (until its upstream answers, a bounded wait) and is then stored; an unmarked one,
    or one with no call in the gateway, goes at once."""
    llm.script([{"text": "slow answer", "delay": 3, "usage": {"input_tokens": 3, "output_tokens": 2}}])
    provider_chain, _ = chain(gateway.url, run_token(), [("anthropic", "claude-sonnet-4-6")])
    answered: list[str] = []
    caller = threading.Thread(target=lambda: answered.append(asyncio.run(complete(provider_chain, ask()))[1]))
    caller.start()
    try:
        eventually(lambda: llm.requests, what="the model call upstream")  # sent, its answer 3 s away
        assert held(gateway.url) == 0
        assert append(gateway.url, slice(0, 1)).json() == {"last": 1}  # unmarked: not held
        assert held(gateway.url) == 0
        assert append(gateway.url, slice(1, 2), beside=True).json() == {"last": 2}
        assert held(gateway.url) == 1
    finally:
        caller.join(30)
    assert answered == ["slow answer"]
    assert append(gateway.url, slice(2, 3), beside=True).json() == {"last": 3}  # no call: at once
    assert held(gateway.url) == 1


def stored_entries(project: str) -> list[int]:
    head = firestore.Client(project=project).collection(CHECKPOINT_COLLECTION).document("team-a.uid-ex-1")
    return sorted(int(doc.get("seq")) for doc in head.collection("entries").stream())


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_entries_riding_a_model_call_are_stored_and_its_answer_names_them(
    gateway: GatewayServer, llm: ScriptedLLM, firestore_project: str, provider: str
) -> None:
    """The runtime's model call carries its staged entries (RIDING_HEADER): stored in Firestore, in
    the append's transaction, while the call is routed, and its answer names the last (the runtime's
    client reads it, both protocols). Entries that are not the journal's next are not stored and the
    call goes on; a message queued beyond what the call has seen refuses it, and its entries are
    stored all the same."""
    model = "claude-sonnet-4-6" if provider == "anthropic" else "gpt-4.1-mini"
    llm.script([{"text": "ok", "usage": {"input_tokens": 3, "output_tokens": 1}}] * 4)

    def call(first: int, last: int, seen: str = "0") -> ChatResponse:
        value = encode_riding([entry_json(e) for e in JOURNAL[first - 1 : last]])
        assert value is not None
        headers = {RIDING_HEADER: value, INBOX_SEEN_HEADER: seen}
        provider_chain, _ = chain(gateway.url, run_token(), [(provider, model)])
        request = ask().model_copy(update={"headers": headers})
        return asyncio.run(complete(provider_chain, request))[0]

    first = call(1, 2)
    assert first.gateway[RIDING_STORED_HEADER] == "2" and stored_entries(firestore_project) == [1, 2]
    assert RIDING_HEADER not in llm.requests[0].headers  # never sent upstream
    skipped = call(4, 4)  # not the next entry: not stored, and the call is answered
    assert RIDING_STORED_HEADER not in skipped.gateway and stored_entries(firestore_project) == [1, 2]
    assert steer(gateway.url, "Also check Friday.").status_code == 202
    with pytest.raises(ProvidersFailed) as refused:
        call(3, 3)
    assert refused.value.kind == RefusalType.STEERING_QUEUED and len(llm.requests) == 2
    eventually(lambda: stored_entries(firestore_project) == [1, 2, 3], what="the refused call's entries")
    assert call(3, 3, seen="1").gateway[RIDING_STORED_HEADER] == "3"  # the same again: answered
    assert call(4, 4, seen="1").gateway[RIDING_STORED_HEADER] == "4"
    assert stored_entries(firestore_project) == [1, 2, 3, 4] and len(llm.requests) == 4


def test_entries_riding_a_call_are_stored_while_its_answer_is_awaited(
    gateway: GatewayServer, llm: ScriptedLLM, firestore_project: str
) -> None:
    """The entries riding a call are stored once its request has gone upstream, while the provider
    is still answering (not after: their store's work overlaps the provider's); the answer, seconds
    later, names them."""
    llm.script([{"text": "slow", "delay": 5, "usage": {"input_tokens": 3, "output_tokens": 1}}])
    value = encode_riding([entry_json(e) for e in JOURNAL[:2]])
    assert value is not None
    request = ask().model_copy(update={"headers": {RIDING_HEADER: value, INBOX_SEEN_HEADER: "0"}})
    provider_chain, _ = chain(gateway.url, run_token(), [("anthropic", "claude-sonnet-4-6")])
    answered: list[ChatResponse] = []
    caller = threading.Thread(
        target=lambda: answered.append(asyncio.run(complete(provider_chain, request))[0])
    )
    caller.start()
    try:
        eventually(lambda: stored_entries(firestore_project) == [1, 2], what="the riding entries stored")
        assert not answered  # stored while the provider was still answering
    finally:
        caller.join(30)
    assert [a.gateway[RIDING_STORED_HEADER] for a in answered] == ["2"]
