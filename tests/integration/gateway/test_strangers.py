"""Issue 18, "safe for strangers": attacks on the real gateway (uvicorn, Firestore emulator where
budgets are kept) by someone holding a run token, or no token at all."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.cloud import firestore

from agentry_common.records import Collection
from agentry_common.tokens import RunLimits, mint_run_token
from agentry_gateway.budgets import Amount
from agentry_gateway.ledger import Subjects
from agentry_llm import ProvidersFailed
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.servers import documents

from .harness import (
    KEYRING,
    GatewayServer,
    chain,
    complete,
    config,
    post,
    run_token,
    settings,
    svc_headers,
    svc_token,
)

pytestmark = pytest.mark.integration

DOLLARS = [{"name": "users", "scope": "user", "limits": [{"window": "day", "costUSD": "50"}]}]
# A local model served through the OpenAI channel: the route names it, so the channel allows it, but
# the pricing table has no price for it.
LOCAL = [{"model": "local-*", "chain": [{"channel": "openai", "model": "qwen-7b"}]}]


def ask(model: str, max_tokens: int = 40) -> dict[str, Any]:
    return {"model": model, "max_tokens": max_tokens, "messages": [{"role": "user", "content": "go"}]}


def fs_settings(project: str) -> Any:
    return settings(ledger="firestore", google_cloud_project=project)


@pytest.fixture
def db(firestore_db: firestore.Client) -> firestore.Client:
    return firestore_db


# -- 1. an unpriced model cannot escape a budget in USD ------------------------------------------------


def test_an_unpriced_model_under_a_dollar_budget_is_refused_and_nothing_is_charged(
    firestore_project: str, db: firestore.Client, llm: ScriptedLLM
) -> None:
    llm.script([{"text": "free lunch"}])
    with GatewayServer(fs_settings(firestore_project), config(llm, budgets=DOLLARS, routes=LOCAL)) as gw:
        refused = post(gw.url, "/v1/chat/completions", run_token(), ask("local-anything"))
        admission = localhttp.post(
            f"{gw.url}/v1/agentry/admission",
            json={"namespace": "team-a", "agent": "agent-a", "user": "user-1", "model": "local-anything"},
            headers=svc_headers(),
            timeout=30,
        )
        # The runtime's path: final, no retry, no fallback.
        provider_chain, _ = chain(gw.url, run_token(), [("openai", "local-anything")])
        with pytest.raises(ProvidersFailed) as err:
            asyncio.run(complete(provider_chain))
        gw.drain()
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert "qwen-7b has no price" in error["message"] and "unpricedModelPrice" in error["message"]
    assert "policy users limits user user-1 to $50 per day" in error["message"]
    assert err.value.final and "has no price" in str(err.value)
    assert admission.status_code == 200 and admission.json()["action"] == "refuse"
    assert "has no price" in admission.json()["reason"]
    assert not llm.requests  # nothing reached a provider
    assert documents(db, Collection.BUDGET_COUNTERS) == {}  # nothing reserved, nothing charged
    records = list(documents(db, Collection.LLM_CALLS).values())
    assert [r["outcome"] for r in records] == ["refused", "refused"]
    assert all(r["charged"]["costNanos"] == 0 and r["charged"]["tokens"] == 0 for r in records)


def test_a_default_price_lets_unpriced_models_run_and_charges_them(llm: ScriptedLLM) -> None:
    llm.script([{"text": "priced now", "usage": {"input_tokens": 1000, "output_tokens": 1000}}])
    priced = {"inputPerMTok": "10", "outputPerMTok": "20"}
    cfg = config(llm, budgets=DOLLARS, routes=LOCAL, unpricedModelPrice=priced)
    with GatewayServer(settings(), cfg) as gw:
        answer = post(gw.url, "/v1/chat/completions", run_token(), ask("local-anything"))
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]
    assert answer.status_code == 200, answer.text
    assert record["model"] == "qwen-7b" and record["priced"] is False
    assert record["charged"]["costUSD"] == "0.03"  # 1000 * $10/M + 1000 * $20/M


def test_a_run_limit_in_dollars_refuses_an_unpriced_model_too(llm: ScriptedLLM) -> None:
    llm.script([{"text": "tokens only"}])
    token = run_token(limits=RunLimits(cost_usd="1.00"))
    with GatewayServer(settings(), config(llm, routes=LOCAL)) as gw:
        refused = post(gw.url, "/v1/chat/completions", token, ask("local-anything"))
        tokens_only = post(gw.url, "/v1/chat/completions", run_token(), ask("local-anything"))
    assert refused.status_code == 402 and "policy run limits execution" in refused.json()["error"]["message"]
    assert tokens_only.status_code == 200, tokens_only.text  # no limit in USD applies: nothing to escape


# -- 2. models: the channel's allow-list and the run's model chain ---------------------------------------


def test_a_model_outside_the_tokens_chain_or_the_channels_list_is_refused(llm: ScriptedLLM) -> None:
    llm.script([{"text": "allowed"}, {"text": "cheaper"}])
    chained = mint_run_token(
        KEYRING,
        namespace="team-a",
        execution="ex-chain",
        execution_uid="uid-chain",
        agent="agent-a",
        user="user-1",
        active_deadline_seconds=600,
        models=["claude-sonnet-4-6", "gpt-4.1"],
    )
    budgets = [{"name": "users", "scope": "user", "limits": [{"window": "5h", "messages": 100}]}]
    with GatewayServer(settings(), config(llm, budgets=budgets)) as gw:
        opus = post(gw.url, "/v1/messages", chained, ask("claude-opus-4-6"))
        sonnet = post(gw.url, "/v1/messages", chained, ask("claude-sonnet-4-6"))
        # The throttle zone's cheaper model is the gateway's own choice: not refused.
        subjects = Subjects(user="user-1", agent="team-a/agent-a", execution="team-a/seed")
        gw.run(gw.gateway.ledger.settle(subjects, "seed", Amount(messages=84)))
        throttled = post(gw.url, "/v1/messages", chained, ask("claude-sonnet-4-6"))
        # An older token (no model chain) still works; a model no channel allows does not.
        invented = post(gw.url, "/v1/messages", run_token(), ask("claude-invented-9"))
        cross = post(gw.url, "/v1/messages", run_token(), ask("gpt-4.1"))
    assert opus.status_code == 400, opus.text
    assert "'claude-opus-4-6' is not in this run's model chain" in opus.json()["error"]["message"]
    assert sonnet.status_code == 200
    assert throttled.status_code == 200 and throttled.headers["x-agentry-model"] == "claude-haiku-4-5"
    assert invented.status_code == 400 and "'claude-invented-9' is not allowed" in invented.text
    assert cross.status_code == 400 and "'gpt-4.1' is not allowed" in cross.text
    assert [r.body["model"] for r in llm.requests] == ["claude-sonnet-4-6", "claude-haiku-4-5"]


# -- 3. an installation-wide budget --------------------------------------------------------------------


def test_an_exhausted_installation_budget_refuses_a_brand_new_user(
    firestore_project: str, db: firestore.Client, llm: ScriptedLLM
) -> None:
    llm.script([{"text": "one"}, {"text": "two"}])
    budgets = [
        {"name": "everyone", "scope": "installation", "limits": [{"window": "day", "messages": 2}]},
        {
            "name": "team-a",
            "scope": "namespace",
            "match": "team-a",
            "limits": [{"window": "day", "messages": 50}],
        },
    ]
    with GatewayServer(fs_settings(firestore_project), config(llm, budgets=budgets)) as gw:
        first = post(gw.url, "/v1/messages", run_token("ex-1", user="u-1"), ask("claude-sonnet-4-6"))
        second = post(gw.url, "/v1/messages", run_token("ex-2", user="u-2"), ask("claude-sonnet-4-6"))
        gw.drain()
        newcomer = run_token("ex-3", user="brand-new", namespace="team-z", agent="fresh")
        refused = post(gw.url, "/v1/messages", newcomer, ask("claude-sonnet-4-6"))
        admission = localhttp.post(
            f"{gw.url}/v1/agentry/admission",
            json={"namespace": "team-z", "agent": "fresh", "user": "another", "maxWaitSeconds": 60},
            headers=svc_headers(),
            timeout=30,
        )
        gw.drain()
    assert first.status_code == second.status_code == 200
    assert refused.status_code == 402, refused.text
    message = refused.json()["error"]["message"]
    assert "installation all day messages" in message and "policy everyone" in message
    assert admission.json()["action"] == "refuse" and "installation all" in admission.json()["reason"]
    counters = documents(db, Collection.BUDGET_COUNTERS)
    assert counters["installation:all"]["total"][1] == 2
    assert counters["namespace:team-a"]["total"][1] == 2
    assert "namespace:team-z" not in counters  # no budget applies to team-z: its counter is untouched
    assert not any(c["reservations"] for c in counters.values())


# -- 4. no internals to strangers ----------------------------------------------------------------------


def test_operational_endpoints_need_a_service_token(llm: ScriptedLLM) -> None:
    with GatewayServer(settings(), config(llm)) as gw:
        answers: dict[str, dict[str, int]] = {}
        for path in ("/channels", "/metrics"):
            answers[path] = {
                "none": localhttp.get(f"{gw.url}{path}").status_code,
                "forged": localhttp.get(
                    f"{gw.url}{path}", headers={"authorization": "Bearer agt1.x.y"}
                ).status_code,
                "run": localhttp.get(f"{gw.url}{path}", headers={"x-api-key": run_token()}).status_code,
                "service": localhttp.get(f"{gw.url}{path}", headers=svc_headers()).status_code,
            }
        probe = localhttp.post(f"{gw.url}/channels/anthropic/probe", headers={"x-api-key": run_token()})
        budgets = localhttp.get(
            f"{gw.url}/v1/agentry/budgets",
            params={"namespace": "team-a", "agent": "agent-a"},
            headers={"authorization": f"Bearer {run_token()}"},
        )
        health = localhttp.get(f"{gw.url}/healthz")
        ready = localhttp.get(f"{gw.url}/readyz")
    for path, got in answers.items():
        assert got == {"none": 401, "forged": 401, "run": 403, "service": 200}, path
    assert probe.status_code == 403 and budgets.status_code == 403
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and set(ready.json()) == {"ready", "checks"}
    assert svc_token()  # the only key to those doors


def test_error_bodies_carry_no_exception_text(llm: ScriptedLLM) -> None:
    """A channel whose upstream does not answer (a closed port on an internal address): the caller
    learns which hop failed and how, never the connection error's text (host, port, errno)."""
    cfg = config(llm)
    cfg.channels[0].base_url = "http://127.0.0.1:9"  # nothing listens: connection refused
    with GatewayServer(settings(retry_attempts=1), cfg) as gw:
        failed = post(gw.url, "/v1/messages", run_token(), ask("claude-sonnet-4-6"))
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]
    assert failed.status_code == 502, failed.text
    message = failed.json()["error"]["message"]
    assert "all providers failed" in message and "no answer" in message
    for leak in ("127.0.0.1", ":9", "Connect", "refused", "Errno", "Traceback"):
        assert leak not in failed.text, leak
    assert record["errors"]  # the detail is in the call record, for the run's owner and admins
