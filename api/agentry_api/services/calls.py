"""An Execution's LLM calls: the gateway's metering records (`llmCalls`, read as
`agentry_common.records.LLMCallRecord`) as public views and totals.

The gateway writes one record per call (agentry_gateway.service `_record`, docs/governance.md
"Metering"), attributed to the run token's namespace and Execution; this module only reads them.
Who may see them is the Execution's rule (`RunService.get`): absent or not yours is the same 404.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from agentry_common.pricing import nanos_to_usd, usd_string
from agentry_common.records import LLMCallRecord

from ..auth import User
from ..schemas import LlmCallOut, LlmCallsOut, LlmCallTotals
from .runs import RunService

Doc = dict[str, Any]

MAX_CALLS = 500  # per answer; a run with more is `truncated`


@functools.cache
def _adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    annotation: Any = model.model_fields[name].annotation
    return TypeAdapter(annotation)


def _valid_fields(model: type[BaseModel], doc: Any) -> Doc:
    """The fields of a stored document that are valid for `model`, by their stored names. Strict (a
    "5" is not 5, a bool no number); nested models field by field: an odd field is left out alone."""
    if not isinstance(doc, dict):
        return {}
    fields: Doc = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in doc:
            continue
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            fields[key] = _valid_fields(kind, doc[key])
            continue
        try:
            fields[key] = _adapter(model, name).validate_python(doc[key], strict=True)
        except ValidationError:
            continue
    return fields


def read_record(doc: Doc) -> LLMCallRecord:
    """A stored call record as the gateway's model; missing or odd fields take their defaults (an
    odd time is NaN, shown as none), so any record can be shown."""
    fields = _valid_fields(LLMCallRecord, doc)
    fields.setdefault("id", str(doc.get("id", "")))
    fields.setdefault("ts", math.nan)
    fields.setdefault("outcome", "")
    return LLMCallRecord.model_validate(fields)


def _time(ts: float) -> str | None:
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return None


def record_out(record: LLMCallRecord) -> LlmCallOut:
    reason = (record.route or {}).get("reason")
    return LlmCallOut(
        id=record.id,
        time=_time(record.ts),
        outcome=record.outcome or "unknown",
        protocol=record.protocol or None,
        requestedModel=record.requested_model or None,
        model=record.model or None,
        channel=record.channel or None,
        inputTokens=record.input_tokens,
        cacheReadTokens=record.cache_read_tokens,
        cacheWriteTokens=record.cache_write_tokens,
        cacheNote=(record.cache_markers_note or "cache breakpoints dropped")
        if record.cache_markers_dropped
        else None,
        outputTokens=record.output_tokens,
        costUSD=usd_string(nanos_to_usd(record.charged.cost_nanos)),
        latencyMs=record.latency_ms if "latency_ms" in record.model_fields_set else None,
        fallbacks=record.fallbacks,
        fallbackPath=list(record.fallback_path),
        retries=record.retries,
        zone=record.decision.zone or None,
        decision=record.decision.action or None,
        decisionReason=record.decision.reason or None,
        route=reason if isinstance(reason, str) and reason else None,
    )


def call_out(doc: Doc) -> LlmCallOut:
    """One stored record as its public view; a missing or odd field is shown as absent, never an error."""
    return record_out(read_record(doc))


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
    records = [read_record(d) for d in docs[:limit]]
    listed = {
        "calls": len(records),
        "inputTokens": sum(r.input_tokens for r in records),
        "outputTokens": sum(r.output_tokens for r in records),
        "costNanos": sum(r.charged.cost_nanos for r in records),
        "fallbacks": sum(r.fallbacks for r in records),
        "retries": sum(r.retries for r in records),
    }
    return LlmCallsOut(
        execution=execution,
        items=[record_out(r) for r in records],
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
