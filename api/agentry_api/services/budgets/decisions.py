"""The budget's decisions on the caller's LLM calls: every call the gateway did not simply admit
(throttled to a cheaper model, made to wait, refused), with its explanation, newest first.

Read from the gateway's call records (`llmCalls`), which carry the budget user subject they were
charged to (`agentry_common.governance.budget_subjects`: the Agent's owner label). The query is
pinned to the caller's own owner label and the API's namespace, so nobody else's calls can match.
Calls of agents created with kubectl are charged to `ns:<namespace>`, shared by everybody in it:
they are not shown here.
"""

from __future__ import annotations

import base64
import binascii
import json
import math

from agentry_common.governance import Action

from ...auth import User
from ...schemas import BudgetDecisionOut, BudgetDecisionsOut
from ...storage import Store
from ..calls import read_record, record_out
from ..errors import Invalid

# Everything but a plain admit. WAIT is an admission answer, kept in case a call record carries it.
STEERED = [Action.THROTTLE.value, Action.WAIT.value, Action.REFUSE.value]
DEFAULT_LIMIT = 20
BAD_CURSOR = "cursor is not one this API returned"


def encode_cursor(ts: float, ident: str) -> str:
    raw = json.dumps([ts, ident]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The (ts, id) of a page's last record; anything else is a 422 naming `cursor`."""
    try:
        ts, ident = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise Invalid(["query", "cursor"], BAD_CURSOR) from exc
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
        raise Invalid(["query", "cursor"], BAD_CURSOR)
    if not isinstance(ident, str):
        raise Invalid(["query", "cursor"], BAD_CURSOR)
    return float(ts), ident


async def decisions(
    store: Store, user: User, namespace: str, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> BudgetDecisionsOut:
    after = decode_cursor(cursor) if cursor else None
    docs = await store.decided_calls(namespace, user.owner_label, STEERED, limit + 1, after)
    records = [read_record(d) for d in docs]
    items = [
        BudgetDecisionOut(**record_out(r).model_dump(), execution=r.execution or None, agent=r.agent or None)
        for r in records[:limit]
    ]
    last = records[limit - 1] if len(records) > limit else None  # one more was read: a next page
    more = last is not None and math.isfinite(last.ts)  # a record without a time cannot be a cursor
    return BudgetDecisionsOut(
        items=items, nextCursor=encode_cursor(last.ts, last.id) if last and more else None
    )
