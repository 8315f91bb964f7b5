"""An Execution's LLM calls: the gateway's metering records (`llmCalls`) as public views and totals.

The gateway writes one record per call (agentry_gateway.service `_record`, docs/governance.md
"Metering"), attributed to the run token's namespace and Execution; this module only reads them.
Who may see them is the Execution's rule (`RunService.get`): absent or not yours is the same 404.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from agentry_common.budgets import nanos_to_usd
from agentry_common.pricing import usd_string

from ..auth import User
from ..schemas import LlmCallOut, LlmCallsOut, LlmCallTotals
from .runs import RunService

Doc = dict[str, Any]

MAX_CALLS = 500  # per answer; a run with more is `truncated`


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> Doc:
    return value if isinstance(value, dict) else {}


def _time(ts: Any) -> str | None:
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return None
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return None


def call_out(doc: Doc) -> LlmCallOut:
    """One record as its public view; a missing or odd field is shown as absent, never an error."""
    charged, decision = _dict(doc.get("charged")), _dict(doc.get("decision"))
    latency = doc.get("latencyMs")
    path = doc.get("fallbackPath")
    return LlmCallOut(
        id=str(doc.get("id", "")),
        time=_time(doc.get("ts")),
        outcome=_str(doc.get("outcome")) or "unknown",
        protocol=_str(doc.get("protocol")),
        requestedModel=_str(doc.get("requestedModel")),
        model=_str(doc.get("model")),
        channel=_str(doc.get("channel")),
        inputTokens=_int(doc.get("inputTokens")),
        outputTokens=_int(doc.get("outputTokens")),
        costUSD=usd_string(nanos_to_usd(_int(charged.get("costNanos")))),
        latencyMs=float(latency)
        if isinstance(latency, int | float) and not isinstance(latency, bool)
        else None,
        fallbacks=_int(doc.get("fallbacks")),
        fallbackPath=[str(p) for p in path] if isinstance(path, list) else [],
        retries=_int(doc.get("retries")),
        zone=_str(decision.get("zone")),
        decision=_str(decision.get("action")),
        decisionReason=_str(decision.get("reason")),
        route=_str(_dict(doc.get("route")).get("reason")),
    )


def _totals(sums: dict[str, int]) -> LlmCallTotals:
    inp, out = sums["inputTokens"], sums["outputTokens"]
    return LlmCallTotals(
        calls=sums["calls"],
        inputTokens=inp,
        outputTokens=out,
        tokens=inp + out,
        costUSD=usd_string(nanos_to_usd(sums["costNanos"])),
        fallbacks=sums["fallbacks"],
        retries=sums["retries"],
    )


def calls_out(
    execution: str, docs: list[Doc], limit: int = MAX_CALLS, all_calls: dict[str, int] | None = None
) -> LlmCallsOut:
    """The first `limit` records (oldest first) and the totals: of `all_calls` (the store's sums over
    every record) when given, else of the records listed."""
    kept = docs[:limit]
    items = [call_out(d) for d in kept]
    listed = {
        "calls": len(items),
        "inputTokens": sum(c.inputTokens for c in items),
        "outputTokens": sum(c.outputTokens for c in items),
        "costNanos": sum(_int(_dict(d.get("charged")).get("costNanos")) for d in kept),
        "fallbacks": sum(c.fallbacks for c in items),
        "retries": sum(c.retries for c in items),
    }
    return LlmCallsOut(
        execution=execution,
        items=items,
        totals=_totals(all_calls if all_calls is not None else listed),
        truncated=len(docs) > limit,
    )


async def execution_calls(runs: RunService, user: User, name: str) -> LlmCallsOut:
    """The calls of the user's Execution `name`; NotFound exactly as for the Execution itself."""
    run = await runs.get(user, name)
    uid = run.get("uid")
    if not isinstance(uid, str):  # not mirrored from the cluster yet: ask it
        found = await runs.cluster.get_execution(name)
        uid = (found or {}).get("metadata", {}).get("uid")
    namespace = runs.cluster.namespace
    docs = await runs.store.execution_calls(namespace, name, uid, MAX_CALLS + 1)
    # Past the list's length the totals come from one aggregation over every record: still exact.
    sums = await runs.store.execution_call_totals(namespace, name, uid) if len(docs) > MAX_CALLS else None
    return calls_out(name, docs, all_calls=sums)
