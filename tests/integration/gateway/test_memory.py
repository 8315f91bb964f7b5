"""Agents' memories through the real gateway on Google's Firestore emulator: a run token with `mem`
reads and writes its Agent's store and nothing else, the limits (entries, value size, key shape), an
ended run's token refused, two writers racing for a full store's last slot, and the service routes
the API and the operator use (list, edit, drop)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from google.cloud import firestore

from agentry_common.governance import RUN_END_PATH
from agentry_common.memory import (
    MAX_VALUE_BYTES,
    MEMORY_COLLECTION,
    MEMORY_DROP_PATH,
    MEMORY_KEY_PATH,
    MEMORY_PATH,
    MEMORY_STORE_KEY_PATH,
    MEMORY_STORE_PATH,
    MEMORY_STORES_PATH,
    MemoryList,
)
from agentry_common.tokens import mint_run_token
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import KEYRING, GatewayServer, firestore_gateway, run_token, svc_headers

pytestmark = pytest.mark.integration


def mem_token(execution: str = "ex-1", agent_uid: str = "agent-uid-1", limit: int = 3, **kw: Any) -> str:
    return mint_run_token(
        KEYRING,
        namespace=kw.get("namespace", "team-a"),
        execution=execution,
        execution_uid=f"uid-{execution}",
        agent="agent-a",
        user="user-1",
        active_deadline_seconds=600,
        memory=agent_uid,
        memory_limit=limit,
    )


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def put(url: str, token: str, key: str, value: Any) -> httpx.Response:
    path = MEMORY_KEY_PATH.format(key=key)
    return localhttp.put(f"{url}{path}", json={"value": value}, headers=bearer(token), timeout=30)


def listing(url: str, token: str, **params: Any) -> httpx.Response:
    return localhttp.get(f"{url}{MEMORY_PATH}", params=params, headers=bearer(token), timeout=30)


def svc(method: str, url: str, path: str, **kw: Any) -> httpx.Response:
    return localhttp.request(method, f"{url}{path}", headers=svc_headers(), timeout=30, **kw)


@pytest.fixture
def gateway(firestore_project: str, llm: ScriptedLLM) -> Iterator[GatewayServer]:
    with firestore_gateway(firestore_project, llm) as gw:
        yield gw


def test_a_run_writes_its_agents_memory_and_the_next_run_reads_it(
    gateway: GatewayServer, firestore_db: firestore.Client
) -> None:
    first = put(gateway.url, mem_token("ex-1"), "user.timezone", "Asia/Seoul")
    assert first.status_code == 200, first.text
    assert first.json()["updatedBy"] == "ex-1"
    assert put(gateway.url, mem_token("ex-1"), "style", "five bullet points").status_code == 200

    later = mem_token("ex-2")  # another run of the same Agent
    got = MemoryList.model_validate(listing(gateway.url, later).json())
    assert [(e.key, e.value) for e in got.entries] == [
        ("style", "five bullet points"),
        ("user.timezone", "Asia/Seoul"),
    ]
    assert (got.count, got.max_entries) == (2, 3)
    one = localhttp.get(f"{gateway.url}{MEMORY_PATH}/user.timezone", headers=bearer(later), timeout=30)
    assert one.json()["value"] == "Asia/Seoul"
    found = MemoryList.model_validate(listing(gateway.url, later, q="SEOUL asia").json())
    assert [e.key for e in found.entries] == ["user.timezone"] and found.count == 2

    head = firestore_db.collection(MEMORY_COLLECTION).document("team-a.agent-uid-1").get().to_dict() or {}
    assert {k: head[k] for k in ("namespace", "agentUid", "agent", "count")} == {
        "namespace": "team-a",
        "agentUid": "agent-uid-1",
        "agent": "agent-a",
        "count": 2,
    }

    # Overwriting keeps the count; deleting frees a slot; a missing key is 404.
    assert put(gateway.url, later, "style", "a table").json()["updatedBy"] == "ex-2"
    gone = localhttp.delete(f"{gateway.url}{MEMORY_PATH}/style", headers=bearer(later), timeout=30)
    assert gone.status_code == 204
    again = localhttp.delete(f"{gateway.url}{MEMORY_PATH}/style", headers=bearer(later), timeout=30)
    assert again.status_code == 404
    assert MemoryList.model_validate(listing(gateway.url, later).json()).count == 1


def test_a_store_is_its_agents_alone(gateway: GatewayServer) -> None:
    assert put(gateway.url, mem_token(agent_uid="agent-uid-1"), "k", "mine").status_code == 200
    # Another Agent (or the same name re-created: a new uid), another namespace: empty stores.
    for token in (mem_token(agent_uid="agent-uid-2"), mem_token(agent_uid="agent-uid-1", namespace="team-b")):
        assert MemoryList.model_validate(listing(gateway.url, token).json()).entries == []
    # A run token without `mem` (the Agent's memory is off) is refused.
    refused = listing(gateway.url, run_token("ex-9"))
    assert refused.status_code == 403 and "spec.memory.enabled" in refused.json()["detail"]
    assert localhttp.get(f"{gateway.url}{MEMORY_PATH}", timeout=30).status_code == 401
    assert localhttp.get(f"{gateway.url}{MEMORY_PATH}", headers=svc_headers(), timeout=30).status_code == 403


def test_the_limits_are_refused_with_the_reason(gateway: GatewayServer) -> None:
    token = mem_token(limit=2)
    assert put(gateway.url, token, "a", "1").status_code == 200
    assert put(gateway.url, token, "b", "2").status_code == 200
    full = put(gateway.url, token, "c", "3")
    assert full.status_code == 409 and "2 entries" in full.json()["detail"]
    assert "spec.memory.maxEntries" in full.json()["detail"]
    assert put(gateway.url, token, "a", "overwritten").status_code == 200  # a known key always fits

    big = put(gateway.url, token, "a", "x" * (MAX_VALUE_BYTES + 1))
    assert big.status_code == 413 and big.json()["detail"].startswith("value:")
    bad_key = put(gateway.url, token, "Not A Key", "v")
    assert bad_key.status_code == 422 and bad_key.json()["detail"].startswith("key:")
    not_text = put(gateway.url, token, "a", {"nested": 1})
    assert not_text.status_code == 422 and not_text.json()["detail"][0]["loc"] == ["body", "value"]
    sneaky = localhttp.put(
        f"{gateway.url}{MEMORY_PATH}/a",
        json={"value": "v", "maxEntries": 1000},
        headers=bearer(token),
        timeout=30,
    )
    assert sneaky.status_code == 422 and "only `value`" in sneaky.json()["detail"]


def test_two_writers_racing_for_the_last_slot_store_one(gateway: GatewayServer) -> None:
    token = mem_token(limit=1)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda k: put(gateway.url, token, k, "v"), ["w", "x", "y", "z"]))
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409]
    assert MemoryList.model_validate(listing(gateway.url, token).json()).count == 1


def test_an_ended_runs_token_is_refused(gateway: GatewayServer) -> None:
    token = mem_token("ex-1")
    assert put(gateway.url, token, "k", "v").status_code == 200
    end = localhttp.post(
        f"{gateway.url}{RUN_END_PATH}",
        json={"namespace": "team-a", "execution": "ex-1", "uid": "uid-ex-1"},
        headers=svc_headers(),
        timeout=30,
    )
    assert end.status_code == 200, end.text
    for answer in (listing(gateway.url, token), put(gateway.url, token, "k", "w")):
        assert answer.status_code == 403 and "ended at" in answer.json()["detail"]


def test_the_service_routes_edit_list_and_drop_stores(
    gateway: GatewayServer, firestore_db: firestore.Client
) -> None:
    store = MEMORY_STORE_PATH.format(namespace="team-a", agent_uid="agent-uid-1")
    key = MEMORY_STORE_KEY_PATH.format(namespace="team-a", agent_uid="agent-uid-1", key="note")
    body = {"value": "from the dashboard", "updatedBy": "user:u1", "maxEntries": 5, "agent": "agent-a"}
    written = svc("PUT", gateway.url, key, json=body)
    assert written.status_code == 200 and written.json()["updatedBy"] == "user:u1"
    assert put(gateway.url, mem_token(agent_uid="agent-uid-2"), "k", "v").status_code == 200
    got = MemoryList.model_validate(svc("GET", gateway.url, store).json())
    assert [(e.key, e.value) for e in got.entries] == [("note", "from the dashboard")]
    stores = svc("GET", gateway.url, MEMORY_STORES_PATH).json()["stores"]
    assert sorted(s["agentUid"] for s in stores) == ["agent-uid-1", "agent-uid-2"]
    # A run token is not a service token.
    assert localhttp.get(f"{gateway.url}{store}", headers=bearer(mem_token()), timeout=30).status_code == 403

    assert svc("DELETE", gateway.url, key).status_code == 204
    assert svc("DELETE", gateway.url, key).status_code == 404
    svc("PUT", gateway.url, key, json=body)
    drop = {
        "stores": [{"namespace": "team-a", "agentUid": "agent-uid-1"}, {"namespace": "x", "agentUid": "y"}]
    }
    dropped = svc("POST", gateway.url, MEMORY_DROP_PATH, json=drop)
    assert dropped.status_code == 200 and dropped.json() == {"dropped": 1}
    assert not firestore_db.collection(MEMORY_COLLECTION).document("team-a.agent-uid-1").get().exists
    assert MemoryList.model_validate(svc("GET", gateway.url, store).json()).entries == []
    left = svc("GET", gateway.url, MEMORY_STORES_PATH).json()["stores"]
    assert [s["agentUid"] for s in left] == ["agent-uid-2"]
