"""The LLM gateway's call records (`llmCalls`, `agentry_common.records.LLMCallRecord`): read only.

Field names come from the record model (its camelCase aliases), so a renamed field fails here, not
silently in a query that matches nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.records import CallDecision, Charged, Collection, LLMCallRecord

from .base import Doc, StoreBase

LLM_CALLS = Collection.LLM_CALLS


def record_field(
    name: str, model: type[LLMCallRecord] | type[Charged] | type[CallDecision] = LLMCallRecord
) -> str:
    """The stored name of a record field (`execution_uid` -> `executionUid`)."""
    return model.model_fields[name].alias or name


TS, ID = record_field("ts"), record_field("id")
IN_TOKENS, OUT_TOKENS = record_field("input_tokens"), record_field("output_tokens")
FALLBACKS, RETRIES = record_field("fallbacks"), record_field("retries")
COST_NANOS = f"{record_field('charged')}.{record_field('cost_nanos', Charged)}"
DECISION_ACTION = f"{record_field('decision')}.{record_field('action', CallDecision)}"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class CallStore(StoreBase):
    def _calls_of(self, namespace: str, execution: str, uid: str | None) -> Any:
        """One Execution's call records: by its uid when known (an earlier Execution of the same name
        had other calls), else by its name. Ownership is the caller's business: these records carry
        no API user id."""
        field, value = (record_field("execution_uid"), uid) if uid else (record_field("execution"), execution)
        return (
            self.db.collection(LLM_CALLS)
            .where(filter=FieldFilter(field, "==", value))
            .where(filter=FieldFilter(record_field("namespace"), "==", namespace))
        )

    async def execution_calls(self, namespace: str, execution: str, uid: str | None, limit: int) -> list[Doc]:
        """The first `limit` call records of one Execution, oldest first (ties by call id)."""
        q = self._calls_of(namespace, execution, uid).order_by(TS).limit(limit)
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted(docs, key=lambda d: (_number(d.get(TS)), str(d.get(ID, ""))))

    async def execution_call_totals(self, namespace: str, execution: str, uid: str | None) -> dict[str, int]:
        """Count and sums over all of one Execution's call records, however many (aggregation queries:
        nothing is read but the results): `calls`, `inputTokens`, `outputTokens`, `costNanos`,
        `fallbacks`, `retries`."""
        query = self._calls_of(namespace, execution, uid)
        # Firestore takes at most five aggregations per query: two queries, side by side.
        head = (
            query.count(alias="calls")
            .sum(IN_TOKENS, alias="inputTokens")
            .sum(OUT_TOKENS, alias="outputTokens")
            .sum(COST_NANOS, alias="costNanos")
            .sum(FALLBACKS, alias="fallbacks")
        )
        tail = query.sum(RETRIES, alias="retries")
        names = ("calls", "inputTokens", "outputTokens", "costNanos", "fallbacks", "retries")
        totals = dict.fromkeys(names, 0)
        for rows in await asyncio.gather(head.get(), tail.get()):
            for row in rows:
                totals.update({result.alias: int(result.value or 0) for result in row})
        return totals

    async def decided_calls(
        self, namespace: str, user: str, actions: list[str], limit: int, after: tuple[float, str] | None
    ) -> list[Doc]:
        """The newest `limit` call records charged to the budget user subject `user` in `namespace`
        whose budget decision is one of `actions`, newest first (ties by call id); `after` is the
        (ts, id) of the last record of the previous page. Production needs the composite index
        (namespace, user, decision.action, ts desc, id desc)."""
        q = (
            self.db.collection(LLM_CALLS)
            .where(filter=FieldFilter(record_field("namespace"), "==", namespace))
            .where(filter=FieldFilter(record_field("user"), "==", user))
            .where(filter=FieldFilter(DECISION_ACTION, "in", actions))
            .order_by(TS, direction="DESCENDING")
            .order_by(ID, direction="DESCENDING")
        )
        if after is not None:
            q = q.start_after({TS: after[0], ID: after[1]})
        return [d.to_dict() or {} async for d in q.limit(limit).stream()]
