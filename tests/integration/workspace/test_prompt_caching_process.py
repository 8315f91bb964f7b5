"""Prompt caching and context that fits, with the runtime as a real process against the scripted LLM,
which serves Anthropic's caching rules (testing/agentry_testing/scripted_cache.py) and reports the
usage the real API would: what each turn reads and writes, and what the run is charged for it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentry_common import pricing
from agentry_testing.scripted_llm import RecordedRequest, ScriptedLLM
from agentry_workspace.context import SUMMARY_SYSTEM

from .harness import MODEL, PodRun, base_spec, prepare, run_pod

pytestmark = pytest.mark.integration

TURNS = 8


def printing(i: int, chars: int = 2000, **extra: Any) -> dict[str, Any]:
    """A turn that prints `chars` digits (~2 KB of tool result) with the shell."""
    return {"tool_use": {"name": "shell", "input": {"command": f"printf '%0{chars}d' {i}"}}, **extra}


def marks(body: dict[str, Any]) -> int:
    blocks: list[Any] = [
        *body.get("tools", []),
        *(body["system"] if isinstance(body["system"], list) else []),
    ]
    blocks += [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
    return sum(1 for b in blocks if isinstance(b, dict) and "cache_control" in b)


def charged(requests: list[RecordedRequest]) -> tuple[dict[str, int], Decimal]:
    """The tokens and cost the provider billed for these requests (Messages API usage)."""
    totals = {"input": 0, "read": 0, "write": 0, "output": 0}
    cost = Decimal(0)
    for request in requests:
        usage = request.usage or {}
        read, write = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
        write_1h = (usage.get("cache_creation") or {}).get("ephemeral_1h_input_tokens", 0)
        all_input = usage["input_tokens"] + read + write
        totals["input"] += all_input
        totals["read"] += read
        totals["write"] += write
        totals["output"] += usage["output_tokens"]
        cost += pricing.cost(
            MODEL,
            all_input,
            usage["output_tokens"],
            cache_read=read,
            cache_write=write,
            cache_write_1h=write_1h,
        )
    return totals, cost


def run_turns(tmp_path: Path, spec: dict[str, Any]) -> tuple[PodRun, list[RecordedRequest]]:
    with ScriptedLLM() as llm:
        llm.script([printing(i) for i in range(TURNS - 1)] + [{"text": "All printed."}])
        run = run_pod(tmp_path, prepare(tmp_path, spec, llm_url=llm.url))
        return run, llm.requests


def test_a_multi_turn_run_reads_its_prefix_from_the_cache_and_is_charged_for_it(tmp_path: Path) -> None:
    run, requests = run_turns(tmp_path / "cached", base_spec())
    assert run.code == 0, run.explain()
    assert len(requests) == TURNS
    assert all(0 < marks(r.body) <= pricing.CACHE_MAX_BREAKPOINTS for r in requests)
    reads = [(r.usage or {}).get("cache_read_input_tokens", 0) for r in requests]
    # Once the conversation passes the model's minimum cacheable length, every turn reads what the
    # turn before it wrote: most of its input.
    assert all(read > 0 for read in reads[2:]), reads
    last = requests[-1].usage or {}
    assert last["cache_read_input_tokens"] > 4 * (last["input_tokens"] + last["cache_creation_input_tokens"])

    totals, cost = charged(requests)
    usage = run.result["usage"]
    assert (usage["inputTokens"], usage["outputTokens"]) == (totals["input"], totals["output"])
    assert (usage["cacheReadTokens"], usage["cacheWriteTokens"]) == (totals["read"], totals["write"])
    assert usage["costUSD"] == pricing.usd_string(cost)
    uncached = pricing.cost(MODEL, totals["input"], totals["output"])
    assert usage["uncachedCostUSD"] == pricing.usd_string(uncached)

    # The same run with caching off sends no marks, reads nothing and pays the full input rate.
    plain, plain_requests = run_turns(tmp_path / "plain", base_spec(promptCaching={"enabled": False}))
    assert plain.code == 0, plain.explain()
    assert all(marks(r.body) == 0 for r in plain_requests)
    assert plain.result["usage"]["cacheReadTokens"] == 0
    assert Decimal(plain.result["usage"]["costUSD"]) > 2 * cost


def test_a_run_near_its_window_is_compacted_and_caching_resumes(tmp_path: Path) -> None:
    later = {"match": "tool_use_id"}  # agent turns after the first; a summary request has no tool results
    script = [printing(0, 5000)] + [printing(i, 5000, **later) for i in range(1, 10)]
    script += [{"text": "All printed.", **later}]
    script += [{"text": "SUMMARY: printed ten numbers.", "match": "Summarise this earlier part", "repeat": 5}]
    env = {"AGENTRY_CONTEXT_WINDOW_TOKENS": "8000", "AGENTRY_MAX_OUTPUT_TOKENS": "100"}
    with ScriptedLLM() as llm:
        llm.script(script)
        run = run_pod(tmp_path, prepare(tmp_path, base_spec(tools=["shell"]), llm_url=llm.url, env=env))
        requests = llm.requests

    assert run.code == 0, run.explain()
    events = run.of("compaction")
    assert events and all(e["tokensAfter"] < e["tokensBefore"] for e in events)
    assert any(e["summarisedMessages"] for e in events)
    summaries = [r for r in requests if r.body["system"] == SUMMARY_SYSTEM]
    turns = [r for r in requests if r.body["system"] != SUMMARY_SYSTEM]
    assert len(turns) == 11 and len(summaries) == sum(1 for e in events if e["summarisedMessages"])
    # Every call is charged, the summaries too; only the agent's calls are turns.
    totals, cost = charged(requests)
    usage = run.result["usage"]
    assert (usage["turns"], usage["inputTokens"], usage["costUSD"]) == (
        11,
        totals["input"],
        pricing.usd_string(cost),
    )
    # After a compaction the new prefix is written once, then read again turn after turn.
    first = events[0]["turn"]
    reads = [(r.usage or {}).get("cache_read_input_tokens", 0) for r in turns]
    assert reads[first] > 0, reads  # the turn after the compacted one


def test_a_conversation_that_cannot_fit_ends_with_its_own_exit_code(tmp_path: Path) -> None:
    with ScriptedLLM() as llm:
        llm.script([{"text": "never"}])
        env = {"AGENTRY_CONTEXT_WINDOW_TOKENS": "1024"}  # the tools and 8192 output tokens do not fit
        run = run_pod(tmp_path, prepare(tmp_path, base_spec(), llm_url=llm.url, env=env))
        requests = llm.requests
    assert run.code == 16, run.explain()
    assert run.result["stopReason"] == "context_overflow"
    assert "context window of 1024 tokens" in run.result["summary"]
    assert requests == []  # refused here, not by the provider
