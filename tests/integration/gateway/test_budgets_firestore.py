"""Budgets on Google's Firestore emulator: zones and what they do to calls, admission blocking and
release, metering records, restarts, and 50 concurrent calls from two gateway pods against a nearly
spent budget."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from google.cloud import firestore

from agentry_common.records import Collection
from agentry_common.tokens import RunLimits
from agentry_gateway.budgets import Amount, BudgetPolicy, Calendar, Decision, Thresholds
from agentry_gateway.config import GatewayConfig
from agentry_gateway.ledger import FirestoreLedger, Subjects
from agentry_llm import ProvidersFailed
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import GatewayServer, chain, complete, config, post, run_token, settings, svc_token

pytestmark = pytest.mark.integration

USER = "user-1"
SUBJECTS = Subjects(user=USER, agent="team-a/agent-a", execution="team-a/seed")
MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 40, "messages": [{"role": "user", "content": "go"}]}


def budget_config(llm: ScriptedLLM, **limits: Any) -> GatewayConfig:
    return config(
        llm,
        budgets=[
            {"name": "users", "scope": "user", "limits": [{"window": "5h", **(limits or {"messages": 100})}]}
        ],
    )


@pytest.fixture
def db(firestore_db: firestore.Client) -> firestore.Client:
    return firestore_db


def fs_settings(project: str, **extra: Any) -> Any:
    return settings(ledger="firestore", google_cloud_project=project, **extra)


def seed(gw: GatewayServer, amount: Amount) -> None:
    """Usage already spent by the user (a settlement without a reservation adds it)."""
    gw.run(gw.gateway.ledger.settle(SUBJECTS, "seed", amount))


def call_records(db: firestore.Client) -> list[dict[str, Any]]:
    return [
        d for d in (snap.to_dict() for snap in db.collection(Collection.LLM_CALLS).stream()) if d is not None
    ]


def counter(db: firestore.Client, doc_id: str) -> dict[str, Any]:
    snap = db.collection(Collection.BUDGET_COUNTERS).document(doc_id).get()
    assert snap.exists, doc_id
    data = snap.to_dict()
    assert data is not None
    return data


def test_zones_change_what_a_call_gets(firestore_project: str, llm: ScriptedLLM) -> None:
    llm.script([{"text": "normal"}, {"text": "cheaper"}, {"text": "high priority, cheaper"}])
    with GatewayServer(fs_settings(firestore_project), budget_config(llm)) as gw:
        normal = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        seed(gw, Amount(messages=84))  # 85 of 100 with the first call
        throttled = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        seed(gw, Amount(messages=10))  # 96
        gw.drain()
        # Normal priority in the critical zone: refused, final for the runtime (no fallback, no retry).
        provider_chain, events = chain(
            gw.url, run_token(), [("anthropic", "claude-sonnet-4-6"), ("openai", "gpt-4.1-mini")]
        )
        with pytest.raises(ProvidersFailed) as refused:
            asyncio.run(complete(provider_chain))
        high = post(gw.url, "/v1/messages", run_token(priority=9), MESSAGE)
        gw.drain()
        seed(gw, Amount(messages=10))  # over 100
        exhausted = post(gw.url, "/v1/messages", run_token(priority=10), MESSAGE)
    assert (
        normal.headers["x-agentry-zone"] == "normal"
        and normal.headers["x-agentry-model"] == "claude-sonnet-4-6"
    )
    assert (throttled.headers["x-agentry-decision"], throttled.headers["x-agentry-zone"]) == (
        "throttle",
        "throttle",
    )
    assert throttled.headers["x-agentry-model"] == "claude-haiku-4-5"
    assert throttled.json()["model"] == "claude-haiku-4-5"
    assert refused.value.final and events == []
    assert "refused by the LLM gateway" in str(refused.value) and "HTTP 402" in str(refused.value)
    assert "critical zone" in str(refused.value) and "priority 5" in str(refused.value)
    assert (high.status_code, high.headers["x-agentry-model"]) == (200, "claude-haiku-4-5")
    assert exhausted.status_code == 402
    error = exhausted.json()["error"]
    assert (
        error["type"] == "budget_exceeded" and "budget exhausted: user user-1 5h messages" in error["message"]
    )
    assert exhausted.json()["agentry"]["decision"]["budget"]["percent"] >= 100
    assert [r.body["model"] for r in llm.requests] == [
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "claude-haiku-4-5",
    ]


def test_metering_records_and_counters(
    firestore_project: str, llm: ScriptedLLM, db: firestore.Client
) -> None:
    llm.script([{"text": "a", "usage": {"input_tokens": 1000, "output_tokens": 200}}])
    with GatewayServer(fs_settings(firestore_project), budget_config(llm)) as gw:
        provider_chain, _ = chain(gw.url, run_token("ex-9"), [("anthropic", "claude-sonnet-4-6")])
        asyncio.run(complete(provider_chain))
        gw.drain()
    [record] = call_records(db)
    assert record["outcome"] == "ok"
    assert (record["namespace"], record["execution"], record["agent"], record["user"]) == (
        "team-a",
        "ex-9",
        "agent-a",
        USER,
    )
    assert (record["model"], record["channel"], record["fallbacks"]) == ("claude-sonnet-4-6", "anthropic", 0)
    assert (record["inputTokens"], record["outputTokens"]) == (1000, 200)
    assert record["charged"] == {
        "tokens": 1200,
        "messages": 1,
        "costUSD": "0.006",
        "costNanos": 6_000_000,
        "basis": "usage",
    }
    assert record["latencyMs"] >= record["upstreamMs"] > 0
    assert record["decision"]["action"] == "allow" and "expireAt" in record
    for doc_id in ("user:user-1", "agent:team-a%2Fagent-a", "execution:team-a%2Fex-9%2Fuid-ex-9"):
        data = counter(db, doc_id)
        assert data["total"] == [1200, 1, 6_000_000] and data["reservations"] == {}
    assert "expireAt" in counter(db, "execution:team-a%2Fex-9%2Fuid-ex-9")


def test_run_limits_from_the_token_are_enforced(firestore_project: str, llm: ScriptedLLM) -> None:
    """A run's own limit works as the runtime counts it: calls go ahead while the run is below it
    (even when a call's worst case would not fit), and stop once it is reached: at most the one call
    in flight goes over."""
    llm.script([{"text": "a", "usage": {"input_tokens": 1500, "output_tokens": 400}}] * 2)
    token = run_token("ex-lim", limits=RunLimits(tokens=2000))
    with GatewayServer(fs_settings(firestore_project), config(llm)) as gw:
        first = post(gw.url, "/v1/messages", token, MESSAGE)
        gw.drain()
        second = post(gw.url, "/v1/messages", token, MESSAGE)  # 1,900 of 2,000 used: still below
        gw.drain()
        third = post(gw.url, "/v1/messages", token, MESSAGE)  # 3,800: over, by the one call
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert third.status_code == 402 and "execution team-a/ex-lim/uid-ex-lim total tokens" in third.text


def test_an_ended_executions_tokens_admit_no_more_calls(firestore_project: str, llm: ScriptedLLM) -> None:
    """Once the operator says an Execution is over, its run token (still unexpired) is refused, in
    every gateway pod and after a restart; the tokens of other Executions are not affected."""
    llm.script([{"text": "x", "usage": {"input_tokens": 10, "output_tokens": 5}}] * 3)
    token, other = run_token("ex-end"), run_token("ex-other")

    def end(gw: GatewayServer, auth: str | None = None, **body: str) -> httpx.Response:
        body = {"namespace": "team-a", "execution": "ex-end", "uid": "uid-ex-end", **body}
        return post(gw.url, "/v1/agentry/executions/end", auth, body)

    with GatewayServer(fs_settings(firestore_project), config(llm)) as gw:
        before = post(gw.url, "/v1/messages", token, MESSAGE)
        gw.drain()
        unauthorised = end(gw, token)  # a run token cannot end anything
        first, again = end(gw, svc_token()), end(gw, svc_token())
        after = post(gw.url, "/v1/messages", token, MESSAGE)
        still = post(gw.url, "/v1/messages", other, MESSAGE)
        gw.drain()
    with GatewayServer(fs_settings(firestore_project), config(llm)) as restarted:
        later = post(restarted.url, "/v1/messages", token, MESSAGE)
    assert before.status_code == 200 and still.status_code == 200, still.text
    assert unauthorised.status_code == 403  # a genuine token, of the wrong kind
    assert first.json() == {"execution": "team-a/ex-end/uid-ex-end", "ended": True, "already": False}
    assert again.json()["already"] is True
    for refused in (after, later):
        assert refused.status_code == 402, refused.text
        assert "execution team-a/ex-end/uid-ex-end ended at" in refused.json()["error"]["message"]
    assert len(llm.requests) == 2  # the refused calls never reached the provider


def test_budget_state_survives_a_restart(firestore_project: str, llm: ScriptedLLM) -> None:
    llm.script([{"text": "x", "usage": {"input_tokens": 10, "output_tokens": 5}}] * 4)
    cfg = budget_config(llm, messages=4)
    with GatewayServer(fs_settings(firestore_project), cfg) as gw:
        for _ in range(3):
            assert post(gw.url, "/v1/messages", run_token(priority=9), MESSAGE).status_code == 200
        gw.drain()
    with GatewayServer(fs_settings(firestore_project), cfg) as again:  # a new process: nothing in memory
        state = localhttp.get(
            f"{again.url}/v1/agentry/budgets",
            params={"namespace": "team-a", "agent": "agent-a", "user": USER},
            headers={"authorization": f"Bearer {svc_token()}"},
        ).json()
        fourth = post(again.url, "/v1/messages", run_token(priority=9), MESSAGE)
        again.drain()
        fifth = post(again.url, "/v1/messages", run_token(priority=10), MESSAGE)
    [limit] = state["limits"]
    assert (limit["used"], limit["limit"], limit["percent"], limit["zone"]) == (3, 4, 75.0, "normal")
    assert fourth.status_code == 200  # the fourth of four still fits
    assert fifth.status_code == 402 and "budget exhausted" in fifth.text


def test_admission_decisions_over_http(firestore_project: str, llm: ScriptedLLM) -> None:
    with GatewayServer(fs_settings(firestore_project), budget_config(llm)) as gw:

        def admission(**body: Any) -> httpx.Response:
            return post(
                gw.url,
                "/v1/agentry/admission",
                None,
                {"namespace": "team-a", "agent": "agent-a", "user": USER, **body},
                authorization=f"Bearer {svc_token()}",
            )

        fresh = admission(priority=5, model="claude-sonnet-4-6")
        seed(gw, Amount(messages=85))
        low = admission(priority=2, model="claude-sonnet-4-6")
        normal = admission(priority=5, model="claude-sonnet-4-6")
        seed(gw, Amount(messages=20))
        refused = admission(priority=9, maxWaitSeconds=60)
        unauthenticated = post(gw.url, "/v1/agentry/admission", None, {"namespace": "a", "agent": "b"})
    assert fresh.json()["action"] == "allow"
    wait = low.json()
    assert wait["action"] == "wait" and wait["zone"] == "throttle"
    assert "low-priority work (priority 2) starts below 80 %" in wait["reason"]
    assert wait["budget"]["scope"] == "user" and wait["budget"]["window"] == "5h"
    assert 5 * 3600 - 10 <= wait["retryAfterSeconds"] <= 5 * 3600 + 310
    assert (normal.json()["action"], normal.json()["model"]) == ("throttle", "claude-haiku-4-5")
    assert refused.json()["action"] == "refuse" and "maximum wait of 60 s" in refused.json()["reason"]
    assert unauthenticated.status_code == 401


async def test_admission_blocks_then_releases_when_the_window_frees(firestore_project: str) -> None:
    now = [time.time()]
    cal = Calendar("UTC", 300)
    policy = BudgetPolicy.model_validate(
        {"name": "u", "scope": "user", "limits": [{"window": "1h", "messages": 10}]}
    )
    ledger = FirestoreLedger(
        firestore.AsyncClient(project=firestore_project),
        [policy],
        cal,
        Thresholds(),
        86400,
        clock=lambda: now[0],
    )

    async def admit() -> Decision:
        return await ledger.admission(
            SUBJECTS, priority=5, model=None, cheaper=lambda m: None, max_wait_seconds=None
        )

    try:
        await ledger.settle(SUBJECTS, "burst", Amount(messages=10))
        blocked = await admit()
        assert blocked.action.value == "wait" and blocked.until is not None
        assert blocked.until == cal.bucket(now[0]) + 300 + 3600
        now[0] = blocked.until - 1
        assert (await admit()).action.value == "wait"
        now[0] = blocked.until
        assert (await admit()).action.value == "allow"
    finally:
        await ledger.close()


def _concurrent(urls: list[str], n: int, token: str) -> list[httpx.Response]:
    def one(i: int) -> httpx.Response:
        return post(urls[i % len(urls)], "/v1/messages", token, MESSAGE)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


@pytest.mark.parametrize("underestimated", [False, True], ids=["honest-estimate", "underestimated-input"])
def test_fifty_concurrent_calls_never_overspend(
    firestore_project: str, llm: ScriptedLLM, db: firestore.Client, underestimated: bool
) -> None:
    # The gateway reserves ~70 tokens per call (input estimated from the body's size + max_tokens 40).
    # Each call really uses 50 tokens, or 2,100 when the input is far larger than its estimate.
    usage = {"input_tokens": 2060 if underestimated else 10, "output_tokens": 40}
    llm.script([{"text": "ok", "usage": usage, "delay": 0.05}] * 50)
    limit, spent_before = 100_000, 99_000
    cfg = budget_config(llm, tokens=limit)
    token = run_token("ex-burst", priority=10)
    with (
        GatewayServer(fs_settings(firestore_project), cfg) as pod1,
        GatewayServer(fs_settings(firestore_project), cfg) as pod2,
    ):
        seed(pod1, Amount(tokens=spent_before))
        responses = _concurrent([pod1.url, pod2.url], 50, token)
        pod1.drain()
        pod2.drain()
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert len(ok) + len(refused) == 50
    records = call_records(db)
    estimate = max(r["estimate"]["tokens"] for r in records if r["outcome"] == "ok")
    actual = usage["input_tokens"] + usage["output_tokens"]
    used = counter(db, "user:user-1")["total"][0]
    assert used == spent_before + len(ok) * actual  # every answered call is counted, exactly
    # Reservations admit only what fits: never more calls than the remaining budget / estimate, or,
    # when calls use less than their estimate and settle while others wait (a settlement frees the
    # difference), / actual use ...
    assert 1 <= len(ok) <= (limit - spent_before) // min(estimate, actual)
    if not underestimated:
        assert used <= limit  # ... so with estimates >= actual usage there is no overspend at all,
    else:
        # ... and otherwise the overshoot is bounded by the in-flight calls' underestimates.
        assert used <= limit + len(ok) * (actual - estimate)
    assert all("budget exhausted" in r.json()["error"]["message"] for r in refused)
    assert counter(db, "user:user-1")["reservations"] == {}
