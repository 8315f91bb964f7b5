"""An Execution's LLM calls (issue 8): the gateway's metering records, read by the API and shown on
the run page, scoped to the Execution's owner.

The records are written by a real gateway (`agentry_gateway`, Firestore ledger `record_call`) into
the API's Firestore project, from calls the way the runtime makes them: the shape cannot drift.
"""

from __future__ import annotations

import asyncio
import html
import random
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore
from lightkube import Client

from agentry_common.pricing import nanos_to_usd, usd_string
from agentry_common.records import Collection
from agentry_common.resources import Execution
from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.gateway.harness import (
    ANTHROPIC_KEY,
    OPENAI_KEY,
    GatewayServer,
    chain,
    complete,
    config,
    run_token,
    settings,
)

from .helpers import create_agent, run
from .server import ApiServer

pytestmark = pytest.mark.integration

SONNET = "claude-sonnet-4-6"
FALLBACK_HOP = "anthropic:claude-sonnet-4-6 -> openai:gpt-4.1-mini"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ScriptedLLM, ScriptedLLM]]:
    monkeypatch.setenv("GW_TEST_ANTHROPIC", ANTHROPIC_KEY)
    monkeypatch.setenv("GW_TEST_OPENAI", OPENAI_KEY)
    with ScriptedLLM() as llm, ScriptedLLM() as backup:
        yield llm, backup


def call(gw: GatewayServer, token: str) -> None:
    provider_chain, _ = chain(gw.url, token, [("anthropic", SONNET)])
    asyncio.run(complete(provider_chain))


def records(project: str, namespace: str, execution: str) -> list[dict[str, Any]]:
    db = firestore.Client(project=project)
    try:
        query = db.collection(Collection.LLM_CALLS).where(
            filter=firestore.FieldFilter("execution", "==", execution)
        )
        return [
            d.to_dict() or {} for d in query.stream() if (d.to_dict() or {}).get("namespace") == namespace
        ]
    finally:
        db.close()


def test_an_executions_llm_calls_are_visible_to_its_owner_only(
    api: ApiServer, namespace: str, kube_client: Client, scripted: tuple[ScriptedLLM, ScriptedLLM]
) -> None:
    llm, backup = scripted
    alice, bob = api.guest(), api.guest()
    alice_id, bob_id = alice.get("/api/me").json()["id"], bob.get("/api/me").json()["id"]
    alice_agent, bob_agent = create_agent(alice)["id"], create_agent(bob, name="Other")["id"]
    alice_run = run(alice, alice_agent)["execution"]
    quiet_run = run(alice, alice_agent)["execution"]  # makes no call
    bob_run = run(bob, bob_agent)["execution"]

    # Alice's run: one call falls back (anthropic overloaded twice → openai), one is answered
    # directly; Bob's run: one call; a run of the same name in another namespace, and an earlier one
    # of the same name in this namespace (another uid): one call each.
    llm.script(
        [
            {"error": {"status": 529}},
            {"error": {"status": 503}},
            {"text": "direct", "usage": {"input_tokens": 100, "output_tokens": 20}},
            {"text": "bob", "usage": {"input_tokens": 7, "output_tokens": 2}},
            {"text": "elsewhere", "usage": {"input_tokens": 1000, "output_tokens": 1000}},
            {"text": "earlier", "usage": {"input_tokens": 500, "output_tokens": 500}},
        ]
    )
    backup.script([{"text": "from the fallback", "usage": {"input_tokens": 10, "output_tokens": 3}}])
    cfg = config(
        llm,
        backup,
        routes=[
            {
                "model": SONNET,
                "chain": [{"channel": "anthropic"}, {"channel": "openai", "model": "gpt-4.1-mini"}],
            }
        ],
    )
    project = api.settings.google_cloud_project
    gw_settings = settings(ledger="firestore", google_cloud_project=project, retry_attempts=2)
    with GatewayServer(gw_settings, cfg) as gw:

        def token(execution: str, agent: str, user: str, ns: str = namespace, uid: str = "") -> str:
            uid = uid or str(kube_client.get(Execution, execution, namespace=ns).metadata.uid)  # type: ignore[union-attr]
            return run_token(execution, agent=agent, namespace=ns, user=user, execution_uid=uid)

        alice_token = token(alice_run, alice_agent, alice_id)
        call(gw, alice_token)
        call(gw, alice_token)
        call(gw, token(bob_run, bob_agent, bob_id))
        # The same name elsewhere, and an earlier Execution of the same name here: neither is this run.
        call(gw, token(alice_run, alice_agent, alice_id, ns="elsewhere", uid="uid-elsewhere"))
        call(gw, token(alice_run, alice_agent, alice_id, uid="uid-of-an-earlier-run"))
        gw.drain()

    named = records(project, namespace, alice_run)
    assert len(named) == 3  # the gateway wrote them where the API reads
    stored = [d for d in named if d["executionUid"] != "uid-of-an-earlier-run"]

    # The owner sees exactly the calls of their run (not the other namespace's), oldest first.
    r = alice.get(f"/api/executions/{alice_run}/calls")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["execution"] == alice_run and body["truncated"] is False
    fallback, direct = body["items"]
    assert {fallback["id"], direct["id"]} == {d["id"] for d in stored}
    assert fallback["requestedModel"] == SONNET and fallback["model"] == "gpt-4.1-mini"
    assert fallback["channel"] == "openai" and fallback["outcome"] == "ok"
    assert fallback["fallbacks"] == 1 and fallback["fallbackPath"] == [FALLBACK_HOP]
    assert fallback["retries"] == 1
    assert (fallback["inputTokens"], fallback["outputTokens"]) == (10, 3)
    assert fallback["costUSD"] == "0.000009"  # 8800 nanos: 10 * $0.40/M + 3 * $1.60/M, to 6 decimals
    assert fallback["latencyMs"] > 0 and fallback["time"].endswith("Z")
    assert fallback["zone"] == "normal" and fallback["decision"] == "allow"
    assert direct["model"] == SONNET and direct["channel"] == "anthropic" and direct["fallbacks"] == 0
    assert direct["fallbackPath"] == [] and direct["time"] >= fallback["time"]
    nanos = sum(d["charged"]["costNanos"] for d in stored)
    assert body["totals"] == {
        "calls": 2,
        "inputTokens": 110,
        "outputTokens": 23,
        "tokens": 133,
        "costUSD": usd_string(nanos_to_usd(nanos)),
        "fallbacks": 1,
        "retries": 1,
    }
    assert nanos > 8800

    bob_calls = bob.get(f"/api/executions/{bob_run}/calls").json()
    assert [c["inputTokens"] for c in bob_calls["items"]] == [7] and bob_calls["totals"]["calls"] == 1

    # Someone else's run: the Execution's own answer (404, nothing leaks); an unknown one: 404 too.
    for path in (f"/api/executions/{alice_run}", f"/api/executions/{alice_run}/calls"):
        denied = bob.get(path)
        assert denied.status_code == 404 and denied.json() == {
            "reason": "NotFound",
            "detail": f"execution {alice_run!r} not found",
            "correlationId": denied.headers["x-request-id"],
        }
    unknown = alice.get("/api/executions/no-such-run/calls")
    assert unknown.status_code == 404 and "not found" in unknown.json()["detail"]
    assert api.client().get(f"/api/executions/{alice_run}/calls").status_code == 401

    # A run without calls: an empty list and zero totals.
    quiet = alice.get(f"/api/executions/{quiet_run}/calls").json()
    assert quiet["items"] == [] and quiet["totals"]["calls"] == 0 and quiet["totals"]["costUSD"] == "0"

    # The run page: the calls table with the model used and the fallback path, and the totals.
    page = alice.get(f"/executions/{alice_run}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "LLM calls" in text and 'class="list calls"' in text
    assert '<td class="model-used">gpt-4.1-mini</td>' in text and FALLBACK_HOP in text
    assert "2 calls · 133 tokens" in text
    assert "No calls through the gateway" in alice.get(f"/executions/{quiet_run}").text
    assert bob.get(f"/executions/{alice_run}").status_code == 404

    # The table alone (what the page re-reads while a run is active): the same rows, the owner's only,
    # never cached, and no guest session made for a caller without one.
    part = alice.get(f"/executions/{alice_run}/calls")
    assert part.status_code == 200 and part.headers["cache-control"] == "no-store"
    assert "<html" not in part.text and part.text.count("<tr data-call=") == 2
    assert "2 calls · 133 tokens" in html.unescape(part.text)
    assert bob.get(f"/executions/{alice_run}/calls").status_code == 404
    probe = "<img src=x onerror=alert(1)>"
    escaped = alice.get(f"/executions/{probe}/calls")
    assert escaped.status_code == 404 and escaped.headers["content-type"].startswith("text/plain")
    anonymous = api.client().get(f"/executions/{alice_run}/calls")
    assert anonymous.status_code == 401 and "set-cookie" not in anonymous.headers


def test_a_run_with_more_calls_than_listed_keeps_exact_totals(
    api: ApiServer, namespace: str, kube_client: Client
) -> None:
    """Past 500 calls the list stops at the 500 oldest, and the totals still cover every call (one
    count/sum aggregation in Firestore)."""
    alice = api.guest()
    name = run(alice, create_agent(alice)["id"])["execution"]
    uid = str(kube_client.get(Execution, name, namespace=namespace).metadata.uid)  # type: ignore[union-attr]
    n = 503
    order = list(range(n))
    random.Random(8).shuffle(order)  # written in no particular order
    db = firestore.Client(project=api.settings.google_cloud_project)
    try:
        for start in range(0, n, 250):
            batch = db.batch()
            for i in order[start : start + 250]:
                batch.set(
                    db.collection(Collection.LLM_CALLS).document(f"{uid}-{i:04d}"),
                    {
                        "id": f"{uid}-{i:04d}",
                        "ts": 1_700_000_000 + i,
                        "outcome": "ok",
                        "namespace": namespace,
                        "execution": name,
                        "executionUid": uid,
                        "model": SONNET,
                        "inputTokens": 10 + i,
                        "outputTokens": 2,
                        "charged": {"tokens": 12 + i, "messages": 1, "costNanos": 1_000 * (i + 1)},
                        "fallbacks": i % 2,
                        "retries": 1,
                    },
                )
            batch.commit()
    finally:
        db.close()

    answer = alice.get(f"/api/executions/{name}/calls")
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["truncated"] is True and len(got["items"]) == 500
    assert [c["id"] for c in got["items"][:2]] == [f"{uid}-0000", f"{uid}-0001"]  # the oldest
    assert got["items"][-1]["id"] == f"{uid}-0499"
    totals = got["totals"]
    assert totals["calls"] == n and totals["retries"] == n and totals["fallbacks"] == n // 2
    assert totals["inputTokens"] == sum(10 + i for i in range(n)) and totals["outputTokens"] == 2 * n
    assert totals["costUSD"] == usd_string(nanos_to_usd(sum(1_000 * (i + 1) for i in range(n))))
    page = html.unescape(alice.get(f"/executions/{name}/calls").text)
    assert f"{n} calls" in page and "the first 500 listed" in page
