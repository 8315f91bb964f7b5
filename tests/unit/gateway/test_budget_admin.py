"""Admin-managed budgets, pure: merging Firestore documents with the governance file (bad ones
skipped, the file wins a name, lifted and expired throttles out) and what a manual throttle makes
of a call's and a run's decision."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from agentry_common.governance import Action, Scope, ThrottleMode, ThrottleSpec, Zone
from agentry_gateway.budgets import (
    Amount,
    BudgetPolicy,
    Calendar,
    Counter,
    Decision,
    Subject,
    decide_admission,
    decide_call,
)
from agentry_gateway.budgets.admin_docs import merge, published
from agentry_gateway.budgets.throttles import RECHECK_SECONDS, ManualThrottle

pytestmark = pytest.mark.unit

CAL = Calendar("UTC", 300)
NOW = dt.datetime(2025, 5, 20, 10, 0, tzinfo=dt.UTC).timestamp()
FILE = [
    BudgetPolicy.model_validate(
        {"name": "users", "scope": "user", "limits": [{"window": "5h", "messages": 100}]}
    )
]


def doc(name: str, **over: Any) -> tuple[str, dict[str, Any]]:
    data = {"name": name, "scope": "agent", "match": "team-a/*", "limits": [{"window": "7d", "costUSD": "3"}]}
    data.update(over)
    return name, {**data, "updatedBy": "u-admin", "updatedAt": "2025-05-20T09:00:00Z"}


def throttle(ident: str, **over: Any) -> tuple[str, dict[str, Any]]:
    data = {"id": ident, "scope": "user", "subject": "u1", "mode": "throttle", "reason": "runaway loop"}
    data.update(over)
    return ident, {**data, "active": over.pop("active", True)}


def test_merge_adds_valid_admin_policies_and_skips_bad_ones_with_the_field_named() -> None:
    merged = merge(
        FILE,
        [
            doc("team-a"),
            doc("users"),  # the governance file's name: the file wins
            doc("bad-window", limits=[{"window": "5x", "tokens": 1}]),
            doc("no-metric", limits=[{"window": "day"}]),
            doc("run-scope", scope="execution"),
            ("other-id", doc("renamed")[1]),
        ],
        [],
        NOW,
    )
    assert [p.name for p in merged.policies] == ["users", "team-a"]
    why = dict(merged.skipped)
    assert "governance file" in why["policy users"]
    assert why["policy bad-window"].startswith("limits.0.window:") and "5x" in why["policy bad-window"]
    assert "sets none of tokens" in why["policy no-metric"]
    assert why["policy run-scope"].startswith("scope:")
    assert why["policy other-id"].startswith("name:")
    assert merged.keep_seconds == 7 * 86400  # counters must keep a week of rolling history now


def test_merge_keeps_only_active_throttles() -> None:
    merged = merge(
        FILE,
        [],
        [
            throttle("t-open"),
            throttle("t-later", until=NOW + 60),
            throttle("t-over", until=NOW - 1),
            throttle("t-lifted", active=False),
            throttle("t-bad", mode="slow"),
        ],
        NOW,
    )
    assert [p.name for p in merged.policies] == ["users", "throttle:t-open", "throttle:t-later"]
    assert [d for d, _ in merged.skipped] == ["throttle t-bad"]


def test_published_shows_the_file_in_its_own_spelling() -> None:
    assert published(FILE) == [
        {"name": "users", "scope": "user", "match": "*", "limits": [{"window": "5h", "messages": 100}]}
    ]


def manual(
    mode: ThrottleMode = ThrottleMode.THROTTLE, until: float | None = None, **over: Any
) -> ManualThrottle:
    spec = {"id": "t1", "scope": Scope.USER, "subject": "u1", "mode": mode, "reason": "runaway loop"}
    return ManualThrottle.of(ThrottleSpec.model_validate({**spec, "until": until, "by": "u-admin", **over}))


def user(*policies: BudgetPolicy, used: int = 0) -> Subject:
    counter = Counter(Scope.USER, "u1")
    if used:
        counter.settle("x", Amount(messages=used), NOW, CAL)
    return Subject(counter, [*FILE, *policies])


def cheaper(model: str) -> str | None:
    return {"claude-sonnet-4-6": "claude-haiku-4-5"}.get(model)


def call(subject: Subject, priority: int = 5) -> Decision:
    one = Amount(tokens=1, messages=1)
    return decide_call(
        [subject],
        priority=priority,
        model="claude-sonnet-4-6",
        estimate=one,
        now=NOW,
        cal=CAL,
        cheaper=cheaper,
    )


def admit(subject: Subject, priority: int = 5, max_wait: float | None = None) -> Decision:
    return decide_admission(
        [subject],
        priority=priority,
        model="claude-sonnet-4-6",
        now=NOW,
        cal=CAL,
        cheaper=cheaper,
        max_wait_seconds=max_wait,
    )


def test_a_throttle_sends_a_normal_zone_call_to_the_cheaper_model_with_the_admins_reason() -> None:
    assert call(user()).action is Action.ALLOW
    d = call(user(manual(until=NOW + 3600)))
    assert (d.action, d.zone, d.model) == (Action.THROTTLE, Zone.THROTTLE, "claude-haiku-4-5")
    assert d.reason.startswith("throttled by an admin (user u1, until 2025-05-20T11:00:00Z): runaway loop")


def test_a_refusing_throttle_refuses_and_an_expired_one_does_nothing() -> None:
    d = call(user(manual(ThrottleMode.REFUSE)))
    assert (d.action, d.zone, d.model) == (Action.REFUSE, Zone.EXHAUSTED, None)
    assert d.reason == "refused by an admin (user u1, until lifted): runaway loop"
    assert call(user(manual(ThrottleMode.REFUSE, until=NOW))).action is Action.ALLOW


def test_a_throttle_never_loosens_the_budget() -> None:
    d = call(user(manual(), used=100))  # the budget is exhausted: its refusal stands
    assert d.action is Action.REFUSE and "budget exhausted" in d.reason
    other = manual(subject="u2")  # another user's throttle does not apply
    assert call(user(other)).action is Action.ALLOW


def test_admission_under_a_throttle_waits_low_priority_and_throttles_the_rest() -> None:
    held = admit(user(manual(until=NOW + 600)), priority=2)
    assert (held.action, held.until) == (Action.WAIT, NOW + 600) and "runaway loop" in held.reason
    open_ended = admit(user(manual()), priority=2)
    assert (open_ended.action, open_ended.until) == (Action.WAIT, NOW + RECHECK_SECONDS)
    started = admit(user(manual()), priority=5)
    assert (started.action, started.model) == (Action.THROTTLE, "claude-haiku-4-5")


def test_admission_under_a_refusal_waits_for_its_end_within_the_maximum_wait() -> None:
    assert admit(user(manual(ThrottleMode.REFUSE, until=NOW + 600)), max_wait=3600).action is Action.WAIT
    late = admit(user(manual(ThrottleMode.REFUSE, until=NOW + 7200)), max_wait=3600)
    assert late.action is Action.REFUSE and "maximum wait" in late.reason
    assert admit(user(manual(ThrottleMode.REFUSE)), priority=10).action is Action.REFUSE
