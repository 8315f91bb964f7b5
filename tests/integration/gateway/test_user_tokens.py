"""User tokens on the real gateway (issue 18): a person's own calls outside a run (the API's chat
designer) are metered and budgeted like their runs' — charged to the same user subject, a pseudo-agent
`<namespace>/agentry:designer`, the namespace and the installation, never an Execution — while service
tokens stay refused on the LLM routes and user tokens on the service routes."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud import firestore

from agentry_common.records import Collection
from agentry_common.tokens import mint_user_token
from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.servers import documents

from .harness import KEYRING, GatewayServer, config, post, run_token, settings, svc_token

pytestmark = pytest.mark.integration

OWNER = "1f3a9c0d2b4e6f70"  # an owner label, as the API computes it
MODEL = "claude-sonnet-4-6"


def ask(model: str = MODEL) -> dict[str, Any]:
    return {"model": model, "max_tokens": 40, "messages": [{"role": "user", "content": "design"}]}


def user_token(**kw: Any) -> str:
    args: dict[str, Any] = {"user": OWNER, "namespace": "agentry", "models": [MODEL], **kw}
    return mint_user_token(KEYRING, **args)


@pytest.fixture
def db(firestore_db: firestore.Client) -> firestore.Client:
    return firestore_db


def test_a_user_token_is_charged_to_the_user_like_their_runs(
    firestore_project: str, db: firestore.Client, llm: ScriptedLLM
) -> None:
    llm.script([{"text": "a run's answer"}, {"text": "a designer answer"}])
    budgets = [
        {"name": "users", "scope": "user", "limits": [{"window": "day", "messages": 2}]},
        {"name": "everyone", "scope": "installation", "limits": [{"window": "day", "messages": 100}]},
    ]
    fs = settings(ledger="firestore", google_cloud_project=firestore_project)
    with GatewayServer(fs, config(llm, budgets=budgets)) as gw:
        run = post(gw.url, "/v1/messages", run_token("ex-1", user=OWNER, namespace="agentry"), ask())
        designer = post(gw.url, "/v1/messages", user_token(), ask())
        gw.drain()
        # The user's runs and designer turns share one user budget: 2 of 2 used, the next is refused.
        refused = post(gw.url, "/v1/messages", user_token(), ask())
        gw.drain()
    assert run.status_code == designer.status_code == 200, designer.text
    assert "a designer answer" in designer.text
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded" and f"user {OWNER} day messages" in error["message"]
    assert len(llm.requests) == 2  # the refused call reached no provider

    counters = documents(db, Collection.BUDGET_COUNTERS)
    assert counters[f"user:{OWNER}"]["total"][1] == 2
    assert counters["installation:all"]["total"][1] == 2
    # No Execution counter, and the shared pseudo-agent only while a budget applies to it.
    assert not [c for c in counters if c.startswith("execution:") and "ex-1" not in c]
    assert "agent:agentry%2Fagentry:designer" not in counters
    assert not any(c["reservations"] for c in counters.values())

    records = sorted(documents(db, Collection.LLM_CALLS).values(), key=lambda r: r["ts"])
    by_agent = {r["agent"]: r for r in records if r["outcome"] == "ok"}
    mine = by_agent["designer"]
    assert (mine["user"], mine["namespace"], mine["execution"], mine["executionUid"]) == (
        OWNER,
        "agentry",
        "",
        "",
    )
    assert mine["model"] == MODEL and mine["charged"]["messages"] == 1
    assert by_agent["agent-a"]["execution"] == "ex-1"  # a run's record is as before
    assert [r["agent"] for r in records if r["outcome"] == "refused"] == ["designer"]


def test_an_agent_budget_on_the_pseudo_agent_caps_every_users_designer(llm: ScriptedLLM) -> None:
    llm.script([{"text": "one"}, {"text": "two"}])
    budgets = [
        {
            "name": "designer",
            "scope": "agent",
            "match": "*/agentry:designer",
            "limits": [{"window": "day", "messages": 1}],
        }
    ]
    with GatewayServer(settings(), config(llm, budgets=budgets)) as gw:
        first = post(gw.url, "/v1/messages", user_token(user="alice"), ask())
        gw.drain()
        second = post(gw.url, "/v1/messages", user_token(user="bob"), ask())
        a_run = post(gw.url, "/v1/messages", run_token("ex-9", namespace="agentry"), ask())
    assert first.status_code == a_run.status_code == 200  # a real agent's run is not that subject
    assert second.status_code == 402 and "agent agentry/agentry:designer" in second.text


def test_which_token_opens_which_door(llm: ScriptedLLM) -> None:
    llm.script([{"text": "ok"}])
    with GatewayServer(settings(), config(llm)) as gw:
        other_model = post(gw.url, "/v1/messages", user_token(), ask("claude-opus-4-6"))
        service_on_llm = post(gw.url, "/v1/messages", svc_token(), ask())
        expired = post(gw.url, "/v1/messages", user_token(ttl_seconds=-120), ask())
        user_on_service = localhttp.get(
            f"{gw.url}/channels", headers={"authorization": f"Bearer {user_token()}"}, timeout=30
        )
        user_on_admission = localhttp.post(
            f"{gw.url}/v1/agentry/admission",
            json={"namespace": "agentry", "agent": "x"},
            headers={"x-api-key": user_token()},
            timeout=30,
        )
        answered = post(gw.url, "/v1/messages", user_token(), ask())
    assert other_model.status_code == 400
    assert "'claude-opus-4-6' is not among this token's models (claude-sonnet-4-6)" in other_model.text
    assert service_on_llm.status_code == 401 and "a run or user token is required" in service_on_llm.text
    assert expired.status_code == 401 and "expired" in expired.text
    assert user_on_service.status_code == 403 and user_on_admission.status_code == 403
    assert answered.status_code == 200, answered.text
    assert len(llm.requests) == 1
