"""An API agent's schedule paused by the operator (pauseOnFailure) is adopted, not re-applied over."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_api.services.agents import paused_by_operator

pytestmark = pytest.mark.unit

SPEC: dict[str, Any] = {
    "instructions": "Summarise.",
    "model": {"name": "claude-sonnet-4-6"},
    "schedule": {"cron": "0 7 * * *", "pauseOnFailure": {"consecutiveFailures": 2}},
}
PAUSED = {"conditions": [{"type": "SchedulePaused", "status": "True", "reason": "ConsecutiveFailures"}]}


def cr(spec: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    return {"metadata": {"name": "a"}, "spec": spec, "status": status or {}}


def suspended(spec: dict[str, Any]) -> dict[str, Any]:
    return {**spec, "schedule": {**spec["schedule"], "suspend": True}}


def test_the_operators_pause_is_adopted() -> None:
    assert paused_by_operator(cr(suspended(SPEC), PAUSED), {"spec": SPEC})


def test_other_drift_or_no_pause_condition_is_not_adopted() -> None:
    assert not paused_by_operator(cr(suspended(SPEC), {}), {"spec": SPEC})  # someone's kubectl edit
    other = {**suspended(SPEC), "instructions": "Something else."}
    assert not paused_by_operator(cr(other, PAUSED), {"spec": SPEC})  # more than the pause changed
    assert not paused_by_operator(cr(SPEC, PAUSED), {"spec": SPEC})  # not suspended in the cluster
    resumed = {"conditions": [{"type": "SchedulePaused", "status": "False"}]}
    assert not paused_by_operator(cr(suspended(SPEC), resumed), {"spec": SPEC})
