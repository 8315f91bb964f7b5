""" "Failed never means free", through the real gateway: each way a call can end without a clean answer
is charged by the rule (gateway/agentry_gateway/charging.py, docs/governance.md "What a call is
charged"), and the Execution's counter holds what the record says. A stream cut off after text and a
client that goes away are in test_auth_resilience.py."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agentry_testing.scripted_llm import ScriptedLLM

from .harness import GatewayServer, config, post, run_token, settings

pytestmark = pytest.mark.integration

MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 40, "messages": [{"role": "user", "content": "go"}]}
ROUTE = [{"model": "*", "chain": [{"channel": "anthropic"}]}]


def _call(llm: ScriptedLLM, **overrides: Any) -> tuple[httpx.Response, dict[str, Any], list[int]]:
    """One call on the Anthropic channel alone: its answer, its record and the Execution's total."""
    with GatewayServer(settings(**overrides), config(llm, routes=ROUTE)) as gw:
        response = post(gw.url, "/v1/messages", run_token(), MESSAGE)
        gw.drain()
        record = gw.gateway.ledger.calls[-1]  # type: ignore[attr-defined]
        docs = gw.gateway.ledger.docs  # type: ignore[attr-defined]
    [execution] = [doc for cid, doc in docs.items() if cid.startswith("execution:")]
    assert all(doc["reservations"] == {} for doc in docs.values())  # nothing left held
    return response, record, execution["total"]


def test_a_call_cut_by_its_deadline_is_charged_its_estimate(llm: ScriptedLLM) -> None:
    llm.script([{"text": "too late", "delay": 3}])
    response, record, total = _call(llm, call_deadline_seconds=1, retry_attempts=1)
    assert response.status_code == 504
    assert record["outcome"] == "timeout" and record["charged"]["basis"] == "estimate"
    charged = record["charged"]
    assert (charged["tokens"], charged["costNanos"]) == (
        record["estimate"]["tokens"],
        record["estimate"]["costNanos"],
    )
    assert total == [charged["tokens"], 1, charged["costNanos"]] and charged["costNanos"] > 0


def test_a_stream_that_fails_after_the_providers_200_is_charged(llm: ScriptedLLM) -> None:
    llm.script([{"text": "x", "stream_error": {"type": "overloaded_error"}}])
    response, record, total = _call(llm, retry_attempts=1)
    assert response.status_code == 502
    assert record["outcome"] == "failed" and record["charged"]["basis"] == "estimate"
    assert record["charged"]["costNanos"] == record["estimate"]["costNanos"] > 0
    assert total[2] == record["charged"]["costNanos"]


def test_a_retry_after_a_failed_stream_pays_both_attempts(llm: ScriptedLLM) -> None:
    llm.script(
        [
            {"text": "x", "stream_error": {"type": "overloaded_error"}},
            {"text": "ok", "usage": {"input_tokens": 100, "output_tokens": 10}},
        ]
    )
    response, record, total = _call(llm, retry_attempts=2)
    assert response.status_code == 200 and record["outcome"] == "ok"
    assert record["charged"]["basis"] == "usage+estimate"
    usage_nanos = 100 * 3_000 + 10 * 15_000  # Sonnet: $3 and $15 per million tokens, in nano-USD
    assert record["charged"]["costNanos"] == usage_nanos + record["estimate"]["costNanos"]
    assert total == [record["charged"]["tokens"], 1, record["charged"]["costNanos"]]


def test_a_call_the_provider_declined_costs_nothing(llm: ScriptedLLM) -> None:
    llm.script([{"error": {"status": 529}}, {"error": {"status": 529}}])
    response, record, total = _call(llm, retry_attempts=2)
    assert response.status_code == 502 and record["outcome"] == "failed"
    assert record["charged"]["basis"] == "none" and record["charged"]["costNanos"] == 0
    assert total == [0, 0, 0]
