"""The one helper that sets status conditions, the way meta.SetStatusCondition does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from agentry_common.conditions import ConditionType, Reason

from .builders.kinds import Condition


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Condition] | None,
    type_: ConditionType,
    status: bool | None,
    reason: Reason,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> list[Condition]:
    """Return a new list with condition `type_` set; lastTransitionTime moves only on a change."""
    type_name, reason_name = str(type_), str(reason)  # plain str in the status
    status_str = "Unknown" if status is None else ("True" if status else "False")
    result: list[Condition] = [{**c} for c in (conditions or [])]
    for cond in result:
        if cond.get("type") == type_name:
            if cond.get("status") != status_str:
                cond["status"] = status_str
                cond["lastTransitionTime"] = now or now_rfc3339()
            cond["reason"] = reason_name
            cond["message"] = message
            if generation is not None:
                cond["observedGeneration"] = generation
            return result
    new: Condition = {
        "type": type_name,
        "status": status_str,
        "reason": reason_name,
        "message": message,
        "lastTransitionTime": now or now_rfc3339(),
    }
    if generation is not None:
        new["observedGeneration"] = generation
    result.append(new)
    return result


def get_condition(conditions: Sequence[Condition] | None, type_: ConditionType) -> Condition | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
