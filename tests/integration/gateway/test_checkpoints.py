"""Run checkpoint journals through the real gateway on Google's Firestore emulator: what a run token
may read and write (its own journal, its parent's for a follow-up, nothing else), an ended run's
token refused, two gateway pods racing for the same seq, exact retries, paging, the limits, and the
operator's prune (a service token)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from google.cloud import firestore

from agentry_common.checkpoints import (
    CHECKPOINT_COLLECTION,
    CHECKPOINT_PATH,
    CHECKPOINT_PRUNE_PATH,
    MAX_ENTRIES_PER_APPEND,
    MAX_ENTRY_BYTES,
    Entry,
    Journal,
    entry_bytes,
    sign_entry,
    verify_chain,
)
from agentry_common.governance import RUN_END_PATH
from agentry_common.tokens import mint_run_token, mint_user_token
from agentry_gateway.checkpoints import Limits
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import KEYRING, GatewayServer, config, firestore_gateway, run_token, settings, svc_headers

pytestmark = pytest.mark.integration

KEY = "state-key-of-the-run"


def signed(first: int, n: int, *, previous: str = "", key: str = KEY, size: int = 20) -> list[Entry]:
    out: list[Entry] = []
    for seq in range(first, first + n):
        out.append(
            sign_entry(key, previous, seq, "tool_result", {"output": "y" * size}, at="2026-01-01T00:00:00Z")
        )
        previous = out[-1].sig
    return out


def wire(entries: list[Entry]) -> dict[str, Any]:
    return {"entries": [e.wire() for e in entries]}


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def append(url: str, token: str, entries: list[Entry] | dict[str, Any]) -> httpx.Response:
    body = entries if isinstance(entries, dict) else wire(entries)
    return localhttp.post(f"{url}{CHECKPOINT_PATH}", json=body, headers=bearer(token), timeout=30)


def read(url: str, token: str, **params: Any) -> httpx.Response:
    return localhttp.get(f"{url}{CHECKPOINT_PATH}", params=params, headers=bearer(token), timeout=30)


def follow_up_token(parent: str = "ex-1", parent_uid: str = "uid-ex-1") -> str:
    return mint_run_token(
        KEYRING,
        namespace="team-a",
        execution="ex-2",
        agent="agent-a",
        execution_uid="uid-ex-2",
        user="user-1",
        active_deadline_seconds=600,
        parent=parent,
        parent_uid=parent_uid,
    )


def race(urls: list[str], token: str, batches: list[list[Entry]]) -> list[httpx.Response]:
    """Each batch appended at once through its gateway (threads released together)."""
    start = threading.Barrier(len(urls))

    def send(i: int) -> httpx.Response:
        start.wait()
        return append(urls[i], token, batches[i])

    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(send, range(len(urls))))


@pytest.fixture
def gateway(firestore_project: str, llm: ScriptedLLM) -> Iterator[GatewayServer]:
    with firestore_gateway(firestore_project, llm) as gw:
        yield gw


def test_a_run_appends_to_its_journal_and_reads_it_back_whole(
    gateway: GatewayServer, firestore_db: firestore.Client
) -> None:
    token, journal = run_token(), signed(1, 3)
    first = append(gateway.url, token, journal[:2])
    assert first.status_code == 200, first.text
    assert first.json() == {"last": 2}
    # x-api-key (what the Anthropic SDK sends for ANTHROPIC_API_KEY) is accepted like Bearer.
    second = localhttp.post(
        f"{gateway.url}{CHECKPOINT_PATH}", json=wire(journal[2:]), headers={"x-api-key": token}, timeout=30
    )
    assert second.json() == {"last": 3}
    got = Journal.model_validate(read(gateway.url, token).json())
    assert (got.namespace, got.execution, got.uid, got.last, got.more) == (
        "team-a",
        "ex-1",
        "uid-ex-1",
        3,
        False,
    )
    assert got.entries == journal and verify_chain([KEY], got.entries) == KEY
    head = firestore_db.collection(CHECKPOINT_COLLECTION).document("team-a.uid-ex-1").get().to_dict() or {}
    assert {k: head[k] for k in ("namespace", "execution", "uid", "agent", "last")} == {
        "namespace": "team-a",
        "execution": "ex-1",
        "uid": "uid-ex-1",
        "agent": "agent-a",
        "last": 3,
    }
    assert head["bytes"] > 0 and head["expireAt"] > head["updatedAt"] >= head["createdAt"]


def test_a_token_reads_its_own_journal_and_its_parents_only(gateway: GatewayServer) -> None:
    parent_journal = signed(1, 2, key="parent-key")
    assert append(gateway.url, run_token("ex-1"), parent_journal).status_code == 200
    assert append(gateway.url, run_token("ex-3"), signed(1, 1, key="stranger")).status_code == 200

    child = follow_up_token()
    parent = read(gateway.url, child, of="parent")
    assert parent.status_code == 200, parent.text
    got = Journal.model_validate(parent.json())
    assert (got.execution, got.uid, got.entries) == ("ex-1", "uid-ex-1", parent_journal)
    own = Journal.model_validate(read(gateway.url, child).json())
    assert (own.uid, own.last, own.entries) == ("uid-ex-2", 0, [])  # not the parent's, not ex-3's

    # A run that is not a follow-up has no parent to read; there is no way to name another run.
    orphan = read(gateway.url, run_token("ex-3"), of="parent")
    assert orphan.status_code == 403 and "no parent" in orphan.json()["detail"]
    other = read(gateway.url, run_token("ex-3"), of="ex-1")
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["query", "of"]
    # The same uid in another namespace is another journal.
    elsewhere = read(gateway.url, run_token("ex-1", namespace="team-b"))
    assert Journal.model_validate(elsewhere.json()).last == 0
    # Appends go to the token's own journal only: the parent's stays as it was.
    assert append(gateway.url, child, signed(1, 1)).json() == {"last": 1}
    assert Journal.model_validate(read(gateway.url, child, of="parent").json()).last == 2


def test_only_a_run_token_with_an_execution_uid_gets_a_journal(gateway: GatewayServer) -> None:
    no_uid = mint_run_token(
        KEYRING, namespace="team-a", execution="ex-1", agent="agent-a", active_deadline_seconds=600
    )
    refused = read(gateway.url, no_uid)
    assert refused.status_code == 403 and "Execution uid" in refused.json()["detail"]
    user = mint_user_token(KEYRING, namespace="team-a", user="user-1", purpose="designer")
    assert read(gateway.url, user).status_code == 403
    assert (
        localhttp.get(f"{gateway.url}{CHECKPOINT_PATH}", headers=svc_headers(), timeout=30).status_code == 403
    )
    assert localhttp.get(f"{gateway.url}{CHECKPOINT_PATH}", timeout=30).status_code == 401
    assert read(gateway.url, "not-a-token").status_code == 401


def test_an_ended_runs_token_is_refused(gateway: GatewayServer) -> None:
    token = run_token("ex-1")
    assert append(gateway.url, token, signed(1, 1)).status_code == 200
    end = localhttp.post(
        f"{gateway.url}{RUN_END_PATH}",
        json={"namespace": "team-a", "execution": "ex-1", "uid": "uid-ex-1"},
        headers=svc_headers(),
        timeout=30,
    )
    assert end.status_code == 200, end.text
    for answer in (read(gateway.url, token), append(gateway.url, token, signed(2, 1, previous="x"))):
        assert answer.status_code == 403 and "ended at" in answer.json()["detail"]
    # Its follow-up, a run of its own, still reads the ended parent's journal.
    assert Journal.model_validate(read(gateway.url, follow_up_token(), of="parent").json()).last == 1


def test_two_gateway_pods_racing_for_the_same_seq_store_exactly_one(
    firestore_project: str, llm: ScriptedLLM, gateway: GatewayServer
) -> None:
    token = run_token("ex-1")
    with GatewayServer(
        settings(ledger="firestore", google_cloud_project=firestore_project), config(llm)
    ) as other:
        urls = [gateway.url, other.url] * 3
        # Each app builds its routes' models on first use: done one at a time (two apps in one process,
        # unlike two pods, would build them on two threads at once).
        for url in urls[:2]:
            assert append(url, token, signed(9, 1)).status_code == 409
        previous = ""
        for seq in range(1, 4):  # three rounds, six writers each
            batches = [signed(seq, 1, previous=previous, key=f"pod-{i}") for i in range(len(urls))]
            answers = race(urls, token, batches)
            won = [i for i, a in enumerate(answers) if a.status_code == 200]
            assert len(won) == 1, [a.status_code for a in answers]
            lost = [a for a in answers if a.status_code != 200]
            assert all(a.status_code == 409 and a.json()["last"] == seq for a in lost), [a.text for a in lost]
            previous = batches[won[0]][0].sig
        stored = Journal.model_validate(read(other.url, token).json())
        assert stored.last == 3 and [e.seq for e in stored.entries] == [1, 2, 3]


def test_a_retry_of_the_stored_batch_is_answered_and_anything_else_is_a_conflict(
    gateway: GatewayServer,
) -> None:
    token, journal = run_token(), signed(1, 4)
    assert append(gateway.url, token, journal[:2]).json() == {"last": 2}
    retry = append(gateway.url, token, journal[:2])  # its answer was lost: sent again
    assert retry.status_code == 200 and retry.json() == {"last": 2}
    forged = append(gateway.url, token, signed(1, 2, key="another-pod"))
    assert forged.status_code == 409 and forged.json()["last"] == 2
    gap = append(gateway.url, token, journal[3:])
    assert gap.status_code == 409 and gap.json() == {"detail": gap.json()["detail"], "last": 2}
    assert Journal.model_validate(read(gateway.url, token).json()).entries == journal[:2]


def test_pages_follow_one_another_up_to_the_last_entry(gateway: GatewayServer) -> None:
    token, journal = run_token(), signed(1, 7, size=1000)
    assert append(gateway.url, token, journal).status_code == 200
    gateway.gateway.checkpoints.limits = Limits(page_bytes=3 * entry_bytes(journal[-1]))  # 3 a page
    seen: list[Entry] = []
    after, pages = 0, []
    while True:
        page = Journal.model_validate(read(gateway.url, token, after=after).json())
        pages.append((len(page.entries), page.more))
        seen += page.entries
        if not page.more:
            break
        after = page.entries[-1].seq
    assert pages == [(3, True), (3, True), (1, False)]
    assert seen == journal and verify_chain([KEY], seen) == KEY
    assert read(gateway.url, token, after=-1).status_code == 422


def test_limits_answer_413_with_the_reason(gateway: GatewayServer) -> None:
    token = run_token()
    too_many = append(gateway.url, token, signed(1, MAX_ENTRIES_PER_APPEND + 1, size=1))
    assert too_many.status_code == 413 and f"at most {MAX_ENTRIES_PER_APPEND}" in too_many.json()["detail"]
    too_big = append(gateway.url, token, signed(1, 1, size=MAX_ENTRY_BYTES))
    assert too_big.status_code == 413 and "entry 1" in too_big.json()["detail"]
    gateway.gateway.checkpoints.limits = Limits(run_entries=3, run_bytes=10_000)
    assert append(gateway.url, token, signed(1, 3)).status_code == 200
    full = append(gateway.url, token, signed(4, 1, previous="x"))
    assert full.status_code == 413 and "at most 3 entries" in full.json()["detail"]
    gateway.gateway.checkpoints.limits = Limits(run_bytes=1000)
    heavy = append(gateway.url, token, signed(4, 1, previous="x", size=900))
    assert heavy.status_code == 413 and "bytes" in heavy.json()["detail"]
    assert Journal.model_validate(read(gateway.url, token).json()).last == 3


def test_a_malformed_entry_is_refused_naming_its_field(gateway: GatewayServer) -> None:
    body = wire(signed(1, 1))
    body["entries"][0]["sig"] = "not-hex"
    bad = append(gateway.url, run_token(), body)
    assert bad.status_code == 422 and "entries.0.sig" in bad.json()["detail"]
    no_json = localhttp.post(
        f"{gateway.url}{CHECKPOINT_PATH}", content=b"{", headers=bearer(run_token()), timeout=30
    )
    assert no_json.status_code == 422 and "not JSON" in no_json.json()["detail"]


def test_prune_drops_journals_for_the_operator_only(
    gateway: GatewayServer, firestore_db: firestore.Client
) -> None:
    token = run_token("ex-1")
    assert append(gateway.url, token, signed(1, 3)).status_code == 200
    assert append(gateway.url, run_token("ex-2"), signed(1, 1)).status_code == 200
    body = {"runs": [{"namespace": "team-a", "uid": "uid-ex-1"}, {"namespace": "team-a", "uid": "unknown"}]}
    url = f"{gateway.url}{CHECKPOINT_PRUNE_PATH}"
    assert localhttp.post(url, json=body, headers=bearer(token), timeout=30).status_code == 403
    assert localhttp.post(url, json=body, timeout=30).status_code == 401
    pruned = localhttp.post(url, json=body, headers=svc_headers(), timeout=30)
    assert pruned.status_code == 200 and pruned.json() == {"pruned": 1}
    head = firestore_db.collection(CHECKPOINT_COLLECTION).document("team-a.uid-ex-1")
    assert not head.get().exists and list(head.collection("entries").stream()) == []
    assert firestore_db.collection(CHECKPOINT_COLLECTION).document("team-a.uid-ex-2").get().exists
    assert Journal.model_validate(read(gateway.url, token).json()).last == 0
    bad = localhttp.post(
        url, json={"runs": [{"namespace": "", "uid": "u"}]}, headers=svc_headers(), timeout=30
    )
    assert bad.status_code == 422
