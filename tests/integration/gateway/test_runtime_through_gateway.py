"""The real runtime process (`python -m agentry_workspace`) with only a run token, pointed at the
gateway: its calls are metered per Execution, and a budget refusal mid-run ends the run at once
with a final stop (no retry, no fallback) whose summary says which budget and why."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from google.cloud import firestore

from agentry_common.pricing import cost
from agentry_common.records import Collection
from agentry_gateway.budgets import Amount
from agentry_gateway.ledger import Subjects
from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.workspace.harness import base_spec, prepare, run_pod

from .harness import ANTHROPIC_KEY, OPENAI_KEY, GatewayServer, config, run_token, sent_key, settings

pytestmark = pytest.mark.integration


def test_a_run_is_metered_and_stopped_by_its_budget(
    tmp_path: Path, firestore_project: str, llm: ScriptedLLM
) -> None:
    llm.script(
        [
            {
                "tool_use": {"name": "shell", "input": {"command": "env"}},
                "usage": {"input_tokens": 900, "output_tokens": 50},
            },
            {
                "tool_use": {"name": "shell", "input": {"command": "echo again"}},
                "usage": {"input_tokens": 1000, "output_tokens": 50},
            },
            {"text": "never reached"},
        ]
    )
    cfg = config(
        llm,
        budgets=[{"name": "agents", "scope": "agent", "limits": [{"window": "day", "messages": 2}]}],
    )
    token = run_token("ex-rt", agent="it-agent", namespace="team-it", priority=9)
    spec = base_spec(
        model={
            "provider": "anthropic",
            "name": "claude-sonnet-4-6",
            "fallbacks": [{"provider": "openai", "name": "gpt-4.1-mini"}],
        }
    )
    with GatewayServer(settings(ledger="firestore", google_cloud_project=firestore_project), cfg) as gw:
        # What the operator gives the pod: the token as both provider keys, the gateway as base URLs.
        env = prepare(
            tmp_path,
            spec,
            llm_url=gw.url,
            execution="ex-rt",
            env={"ANTHROPIC_API_KEY": token, "OPENAI_API_KEY": token, "OPENAI_BASE_URL": f"{gw.url}/v1"},
        )
        run = run_pod(tmp_path, env)
        gw.drain()
    db = firestore.Client(project=firestore_project)
    records = sorted(
        (d.to_dict() or {} for d in db.collection(Collection.LLM_CALLS).stream()), key=lambda r: r["ts"]
    )
    db.close()  # type: ignore[no-untyped-call]

    assert run.code == 14, run.explain()  # budget_exceeded: final, the Job is not retried
    result = run.result
    assert result["stopReason"] == "budget_exceeded"
    assert "refused by the LLM gateway" in result["summary"]
    assert "budget exhausted: agent team-it/it-agent day messages at 100.0 %" in result["summary"]
    assert result["fallbacks"] == 0 and result["retries"] == 0  # no fallback to openai, no retry
    assert [r["outcome"] for r in records] == ["ok", "ok", "refused"]
    assert {(r["execution"], r["agent"], r["correlationId"]) for r in records} == {
        ("ex-rt", "it-agent", "corr-ex-rt")
    }
    assert [r["inputTokens"] for r in records] == [900, 1000, 0]
    # Upstream saw only the gateway's key; the pod only ever had the token.
    assert {sent_key(r.headers) for r in llm.requests} == {ANTHROPIC_KEY}
    assert len(llm.requests) == 2
    everything = run.stdout + run.stderr + json.dumps(env)
    assert ANTHROPIC_KEY not in everything and OPENAI_KEY not in everything


def test_a_throttled_run_is_priced_at_the_cheaper_model_that_answered(
    tmp_path: Path, firestore_project: str, llm: ScriptedLLM
) -> None:
    """In a budget's throttle zone the gateway answers with the cheaper model; the runtime reports
    that model and its price, so the Execution's cost is the gateway's charge, not the asked model's."""
    llm.script([{"text": "done cheaply", "usage": {"input_tokens": 2000, "output_tokens": 300}}])
    cfg = config(
        llm, budgets=[{"name": "agents", "scope": "agent", "limits": [{"window": "day", "messages": 100}]}]
    )
    token = run_token("ex-cheap", agent="cheap-agent", namespace="team-it")
    with GatewayServer(settings(ledger="firestore", google_cloud_project=firestore_project), cfg) as gw:
        spent = Subjects(user="user-1", agent="team-it/cheap-agent", execution="team-it/earlier")
        gw.run(gw.gateway.ledger.settle(spent, "seed", Amount(messages=85)))  # throttle zone: 85 %
        env = prepare(
            tmp_path,
            base_spec(model={"provider": "anthropic", "name": "claude-sonnet-4-6"}),
            llm_url=gw.url,
            execution="ex-cheap",
            env={"ANTHROPIC_API_KEY": token},
        )
        run = run_pod(tmp_path, env)
        gw.drain()
    db = firestore.Client(project=firestore_project)
    (record,) = [
        r
        for r in (d.to_dict() or {} for d in db.collection(Collection.LLM_CALLS).stream())
        if r["execution"] == "ex-cheap"
    ]
    db.close()  # type: ignore[no-untyped-call]

    assert run.code == 0, run.explain()
    usage = run.result["usage"]
    assert (record["decision"]["action"], record["model"]) == ("throttle", "claude-haiku-4-5"), record
    assert usage["model"] == "claude-haiku-4-5"
    assert (
        Decimal(usage["costUSD"])
        == cost("claude-haiku-4-5", 2000, 300)
        == Decimal(record["charged"]["costUSD"])
    )
    assert Decimal(usage["costUSD"]) < cost("claude-sonnet-4-6", 2000, 300)
