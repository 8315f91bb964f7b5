"""The chat designer through the real LLM gateway (issue 18): with AGENTRY_GATEWAY_URL and the token
keys, the API holds no provider key; each turn mints a user token for the person who asks, the
gateway meters the call (`llmCalls`, agent `designer`, the person's owner label) and budgets it with
their user budget, and an exhausted budget is answered with the gateway's refusal, no provider call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.cloud import firestore

from agentry_api.auth import owner_label
from agentry_common.records import Collection
from agentry_localcluster.kube import ControlPlane
from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.gateway.harness import ANTHROPIC_KEY, KEYRING, GatewayServer, config, settings

from .server import ApiServer, api_settings, start_api
from .test_chat import frame, open_chat

pytestmark = pytest.mark.integration

BUDGETS = [{"name": "users", "scope": "user", "limits": [{"window": "day", "messages": 1}]}]


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLM]:
    monkeypatch.setenv("GW_TEST_ANTHROPIC", ANTHROPIC_KEY)  # the gateway's channel key
    monkeypatch.setenv("GW_TEST_OPENAI", ANTHROPIC_KEY)
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def gateway(firestore_project: str, llm: ScriptedLLM) -> Iterator[GatewayServer]:
    fs = settings(ledger="firestore", google_cloud_project=firestore_project)
    with GatewayServer(fs, config(llm, budgets=BUDGETS)) as gw:
        yield gw


@pytest.fixture
def governed_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, gateway: GatewayServer
) -> Iterator[ApiServer]:
    [(kid, key)] = KEYRING.keys.items()
    server = start_api(
        api_settings(
            firestore_project,
            namespace,
            str(kube.kubeconfig),
            gateway_url=gateway.url,
            token_keys=f"{kid}:{key.decode()}",
        )
    )
    yield server
    server.stop()


@pytest.fixture
def db(firestore_db: firestore.Client) -> firestore.Client:
    return firestore_db


def calls(db: firestore.Client) -> list[dict[str, Any]]:
    docs = [snap.to_dict() or {} for snap in db.collection(Collection.LLM_CALLS).stream()]
    return sorted(docs, key=lambda d: d["ts"])


def test_designer_turns_are_metered_and_budgeted_by_the_gateway(
    governed_api: ApiServer, gateway: GatewayServer, llm: ScriptedLLM, db: firestore.Client, namespace: str
) -> None:
    llm.script([{"text": "What should the agent do, and how often?"}, {"text": "never sent"}])
    c = governed_api.guest()
    with open_chat(governed_api, c.cookies) as ws:
        hello = frame(ws)
        assert hello["type"] == "hello" and hello["llm"] is True
        ws.send(json.dumps({"type": "message", "text": "I want a stock news agent"}))
        reply = frame(ws)
        assert reply["type"] == "message" and reply["text"].startswith("What should"), reply
        assert reply["usage"]["inputTokens"] > 0
        gateway.drain()

        # The user's budget (1 message a day) is spent: the next turn is refused by the gateway.
        ws.send(json.dumps({"type": "message", "text": "Weekly, Mondays 8am Seoul"}))
        refused = frame(ws)
        gateway.drain()
    user_id = db.collection("conversations").document(hello["conversation"]).get().to_dict()["userId"]
    owner = owner_label(user_id)
    assert refused["type"] == "error" and refused["code"] == "LLM_ERROR", refused
    assert refused["message"].startswith("the LLM gateway refused the call: Agentry budget:"), refused
    assert f"user {owner} day messages" in refused["message"]

    # One provider call, with the gateway's key; the model is the chat model.
    [sent] = llm.requests
    assert (
        ANTHROPIC_KEY in json.dumps(sent.headers) and sent.body["model"] == governed_api.settings.chat_model
    )

    # Both turns are recorded for the person, as the designer: the answered one and the refused one.
    records = calls(db)
    assert [(r["outcome"], r["agent"], r["user"]) for r in records] == [
        ("ok", "designer", owner),
        ("refused", "designer", owner),
    ]
    assert records[0]["namespace"] == namespace and records[0]["execution"] == ""
    assert records[0]["charged"]["messages"] == 1
    assert records[1]["decision"]["action"] == "refuse"
    # The refused turn is not kept in the conversation; the answered one is.
    doc = db.collection("conversations").document(hello["conversation"]).get().to_dict()
    assert [m["role"] for m in doc["messages"]] == ["user", "assistant"]
