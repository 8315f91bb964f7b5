"""Budgets: windows, counters (reserve/settle/prune), zones and the call and admission decisions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from agentry_common.governance import Action, Scope, Zone
from agentry_common.pricing import usd_to_nanos
from agentry_gateway.budgets import (
    Amount,
    BudgetPolicy,
    Calendar,
    Counter,
    Decision,
    Limit,
    Metric,
    Subject,
    Thresholds,
    Window,
    call_amount,
    counter_id,
    decide_admission,
    decide_call,
    estimate_call,
    run_policy,
)
from agentry_gateway.ledger.pods import gone_pods

pytestmark = pytest.mark.unit

CAL = Calendar("UTC", 300)
# 2025-05-20 10:00:00 UTC
NOW = dt.datetime(2025, 5, 20, 10, 0, tzinfo=dt.UTC).timestamp()
ONE = Amount(tokens=1, messages=1)


def policy(window: str = "5h", scope: Scope = Scope.USER, **limits: object) -> BudgetPolicy:
    return BudgetPolicy.model_validate(
        {"name": f"p-{window}", "scope": scope, "limits": [{"window": window, **limits}]}
    )


def user(counter: Counter | None = None, *policies: BudgetPolicy) -> Subject:
    return Subject(counter or Counter(Scope.USER, "u1"), list(policies) or [policy(messages=100)])


def spent(amount: Amount, at: float = NOW, subject: str = "u1") -> Counter:
    counter = Counter(Scope.USER, subject)
    counter.settle("x", amount, at, CAL)
    return counter


def cheaper(model: str) -> str | None:
    return {"claude-sonnet-4-5": "claude-haiku-4-5"}.get(model)


# -- windows and amounts ------------------------------------------------------------------------------


def test_window_parsing_and_labels() -> None:
    assert Window.parse("5h") == Window("rolling", 18000)
    assert Window.parse("90m").label == "90m"
    assert Window.parse("2d").label == "2d"
    assert Window.parse("day") == Window("day")
    for bad in ("5", "0h", "week", "-1h"):
        with pytest.raises(ValueError, match="bad budget window"):
            Window.parse(bad)


def test_limits_need_a_metric_and_a_valid_window() -> None:
    with pytest.raises(ValueError, match="sets none"):
        Limit.model_validate({"window": "day"})
    with pytest.raises(ValueError, match="bad budget window"):
        Limit.model_validate({"window": "weekly", "tokens": 5})
    limit = Limit.model_validate({"window": "month", "costUSD": "12.50", "messages": 900})
    assert dict(limit.amounts()) == {"messages": 900, "costUSD": 12_500_000_000}


def test_cost_is_exact_in_nanodollars() -> None:
    # claude-sonnet-4-5: $3 / $15 per million tokens
    assert call_amount("claude-sonnet-4-5", 1000, 100) == Amount(1100, 1, 4_500_000)
    assert usd_to_nanos(Decimal("0.0000000001")) == 1  # rounded up, never down
    assert call_amount("unpriced-model", 10, 10).cost_nanos == 0
    est = estimate_call("claude-sonnet-4-5", request_bytes=3000, max_tokens=500)
    assert est.tokens == 1000 + 500 and est.messages == 1


# -- counters ----------------------------------------------------------------------------------------


def test_rolling_window_counts_buckets_that_overlap_it() -> None:
    counter = Counter(Scope.USER, "u1")
    five_h = Window.parse("5h")
    counter.settle("a", Amount(10, 1, 0), NOW - 5 * 3600 - 400, CAL)  # older than window + bucket
    counter.settle("b", Amount(20, 1, 0), NOW - 5 * 3600 + 10, CAL)
    counter.settle("c", Amount(30, 1, 0), NOW, CAL)
    assert counter.settled(five_h, NOW, CAL) == Amount(50, 2, 0)
    assert counter.settled(Window("total"), NOW, CAL) == Amount(60, 3, 0)


def test_calendar_windows_follow_the_time_zone() -> None:
    seoul = Calendar("Asia/Seoul", 300)
    late = dt.datetime(2025, 5, 31, 23, 30, tzinfo=dt.UTC).timestamp()  # 08:30 on June 1st in Seoul
    counter = Counter(Scope.USER, "u1")
    counter.settle("a", Amount(5, 1, 0), late, seoul)
    assert list(counter.days) == ["2025-06-01"] and list(counter.months) == ["2025-06"]
    assert counter.settled(Window("day"), late, CAL) == Amount()  # in UTC it is still May 31st
    assert seoul.next_day(late) == dt.datetime(2025, 6, 1, 15, 0, tzinfo=dt.UTC).timestamp()
    assert CAL.next_month(late) == dt.datetime(2025, 6, 1, tzinfo=dt.UTC).timestamp()


def test_reserve_then_settle_replaces_the_estimate() -> None:
    counter = Counter(Scope.USER, "u1")
    counter.reserve("r1", Amount(100, 1, 50), NOW)
    assert counter.reserved(NOW) == Amount(100, 1, 50)
    assert counter.settle("r1", Amount(40, 1, 20), NOW + 1, CAL) is True
    assert counter.reserved(NOW + 1) == Amount()
    assert counter.total == Amount(40, 1, 20)
    assert counter.settle("unknown", Amount(1, 1, 1), NOW + 2, CAL) is False
    assert counter.total == Amount(41, 2, 21)


def test_expired_reservations_count_as_spent_never_dropped() -> None:
    counter = Counter(Scope.USER, "u1")
    counter.reserve("crashed", Amount(100, 1, 7), NOW, ttl=60)
    assert counter.reserved(NOW + 61) == Amount()
    assert counter.prune(NOW + 61, CAL, 86400) == ["crashed"]
    assert counter.total == Amount(100, 1, 7) and not counter.reservations


def test_reservations_of_a_gone_pod_count_as_spent_before_they_expire() -> None:
    counter = Counter(Scope.USER, "u1", writer="gw-dead")
    counter.reserve("in-flight", Amount(100, 1, 7), NOW)
    counter.writer = "gw-alive"
    counter.reserve("mine", Amount(5, 1, 1), NOW)
    again = Counter.from_doc(Scope.USER, "u1", counter.to_doc())  # the owner is stored
    assert {rid: r.owner for rid, r in again.reservations.items()} == {
        "in-flight": "gw-dead",
        "mine": "gw-alive",
    }
    assert again.prune(NOW + 1, CAL, 86400, frozenset({"gw-dead"})) == ["in-flight"]
    assert again.total == Amount(100, 1, 7) and list(again.reservations) == ["mine"]
    assert gone_pods({"gw-a": NOW - 61, "gw-b": NOW - 5, "me": NOW - 999}, NOW, 60, "me") == {"gw-a"}


def test_prune_drops_history_older_than_the_longest_window() -> None:
    counter = Counter(Scope.USER, "u1")
    for days_ago in (40, 3, 1, 0):
        counter.settle("x", ONE, NOW - days_ago * 86400, CAL)
    counter.prune(NOW, CAL, keep_seconds=2 * 86400)
    assert len(counter.rolling) == 2
    assert sorted(counter.days) == ["2025-05-19", "2025-05-20"]
    assert counter.total.messages == 4


def test_document_round_trip() -> None:
    counter = Counter(Scope.AGENT, "team-a/weekly")
    counter.settle("a", Amount(5, 1, 9), NOW, CAL)
    counter.reserve("r", Amount(7, 1, 3), NOW)
    doc = counter.to_doc()
    assert all(isinstance(k, str) for k in doc["rolling"])
    again = Counter.from_doc(Scope.AGENT, "team-a/weekly", doc)
    assert again.to_doc() == doc
    assert Counter.from_doc(Scope.USER, "x", None).total == Amount()
    assert counter_id(Scope.AGENT, "team-a/weekly") == "agent:team-a%2Fweekly"
    assert "endedAt" not in doc
    counter.ended = NOW
    assert Counter.from_doc(Scope.AGENT, "team-a/weekly", counter.to_doc()).ended == NOW


def test_frees_at_for_each_kind_of_window() -> None:
    counter = Counter(Scope.USER, "u1")
    first = NOW - 4 * 3600
    counter.settle("a", Amount(messages=60), first, CAL)
    counter.settle("b", Amount(messages=30), NOW, CAL)
    five_h = Window.parse("5h")
    # Below 80 of 100 once the first bucket leaves the window.
    expected = CAL.bucket(first) + 300 + 5 * 3600
    assert counter.frees_at(five_h, Metric.MESSAGES, 80, NOW, CAL) == expected
    assert counter.frees_at(five_h, Metric.MESSAGES, 95, NOW, CAL) == NOW  # already below
    assert counter.frees_at(Window("day"), Metric.MESSAGES, 80, NOW, CAL) == CAL.next_day(NOW)
    assert counter.frees_at(Window("total"), Metric.MESSAGES, 80, NOW, CAL) is None


# -- zones -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pct", "zone"),
    [
        (0, Zone.NORMAL),
        (79.99, Zone.NORMAL),
        (80, Zone.THROTTLE),
        (94.9, Zone.THROTTLE),
        (95, Zone.CRITICAL),
        (99.99, Zone.CRITICAL),
        (100, Zone.EXHAUSTED),
        (130, Zone.EXHAUSTED),
    ],
)
def test_zone_boundaries(pct: float, zone: Zone) -> None:
    assert Thresholds().zone(pct) is zone


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        Thresholds(throttle=96, critical=95)
    with pytest.raises(ValueError):
        Thresholds(low_priority=8, high_priority=8)


# -- mid-run decisions -------------------------------------------------------------------------------


def call(
    subject: Subject, priority: int = 5, estimate: Amount = ONE, model: str = "claude-sonnet-4-5"
) -> Decision:
    return decide_call(
        [subject], priority=priority, model=model, estimate=estimate, now=NOW, cal=CAL, cheaper=cheaper
    )


def test_normal_zone_allows_the_asked_model() -> None:
    d = call(user(spent(Amount(messages=10))))
    assert d.action is Action.ALLOW and d.model == "claude-sonnet-4-5" and d.zone is Zone.NORMAL
    assert "user u1 5h messages at 10.0 %" in d.reason


def test_throttle_zone_substitutes_the_cheaper_model_and_says_so() -> None:
    d = call(user(spent(Amount(messages=85))))
    assert d.action is Action.THROTTLE and d.model == "claude-haiku-4-5" and d.zone is Zone.THROTTLE
    assert "cheaper model claude-haiku-4-5 instead of claude-sonnet-4-5" in d.reason
    assert d.binding is not None and d.binding.pct == 85.0
    kept = call(user(spent(Amount(messages=85))), model="gpt-4o")
    assert kept.action is Action.THROTTLE and kept.model == "gpt-4o" and "no cheaper model" in kept.reason


def test_critical_zone_lets_only_high_priority_through() -> None:
    subject = user(spent(Amount(messages=96)))
    high = call(subject, priority=8)
    assert high.action is Action.THROTTLE and high.model == "claude-haiku-4-5"
    normal = call(subject, priority=5)
    assert normal.action is Action.REFUSE and normal.zone is Zone.CRITICAL
    assert "only priority >= 8" in normal.reason and "priority 5" in normal.reason


def test_a_call_that_would_not_fit_is_refused_even_for_high_priority() -> None:
    subject = user(spent(Amount(messages=99)))
    assert call(subject, priority=10).action is Action.THROTTLE  # 1 left, the call needs 1
    full = user(spent(Amount(messages=100)))
    d = call(full, priority=10)
    assert d.action is Action.REFUSE and d.zone is Zone.EXHAUSTED and "0 is left" in d.reason
    tokens = user(spent(Amount(tokens=900)), policy(tokens=1000))
    d = call(tokens, estimate=Amount(tokens=150, messages=1))
    assert d.action is Action.REFUSE and "may use up to 150 more, 100 is left" in d.reason


def test_reservations_count_like_spending() -> None:
    counter = spent(Amount(messages=70))
    for i in range(15):
        counter.reserve(f"r{i}", ONE, NOW)
    d = call(user(counter))
    assert d.action is Action.THROTTLE and d.binding is not None and d.binding.reserved == 15


def test_the_highest_limit_across_subjects_decides() -> None:
    u = user(spent(Amount(messages=10)))
    agent = Subject(Counter(Scope.AGENT, "ns/a"), [policy("day", Scope.AGENT, costUSD="1")])
    agent.counter.settle("x", Amount(cost_nanos=usd_to_nanos(Decimal("0.9"))), NOW, CAL)
    d = decide_call([u, agent], priority=5, model="m", estimate=ONE, now=NOW, cal=CAL)
    assert d.action is Action.THROTTLE
    assert d.binding is not None and d.binding.scope is Scope.AGENT and d.binding.metric.value == "costUSD"
    assert "agent ns/a day costUSD at 90.0 % ($0.9 of $1" in d.reason
    wire = d.to_wire()
    assert wire["budget"]["used"] == "0.9" and wire["budget"]["limit"] == "1"
    assert len(wire["limits"]) == 2


def test_no_policy_means_allow() -> None:
    d = decide_call(
        [Subject(Counter(Scope.USER, "u"), [])], priority=0, model="m", estimate=ONE, now=NOW, cal=CAL
    )
    assert d.action is Action.ALLOW and "no budget applies" in d.reason


def test_run_limits_become_an_execution_policy() -> None:
    [p] = run_policy(1000, Decimal("0.50"))
    assert p.scope is Scope.EXECUTION and p.limits[0].window_spec.kind == "total"
    assert run_policy(None, None) == []
    execution = Subject(Counter(Scope.EXECUTION, "ns/ex"), [p])
    execution.counter.settle("x", Amount(tokens=990, messages=3), NOW, CAL)
    estimate = Amount(tokens=20, messages=1)
    d = decide_call([execution], priority=5, model="m", estimate=estimate, now=NOW, cal=CAL)
    assert d.action is Action.ALLOW  # below its own limit: the call may go over it, once
    execution.counter.settle("y", Amount(tokens=15, messages=1), NOW, CAL)
    d = decide_call([execution], priority=5, model="m", estimate=estimate, now=NOW, cal=CAL)
    assert d.action is Action.REFUSE and "execution ns/ex total tokens" in d.reason


def test_an_ended_execution_gets_no_more_calls_whatever_its_budget() -> None:
    execution = Subject(Counter(Scope.EXECUTION, "ns/ex/uid-1"), [])
    free = Subject(Counter(Scope.USER, "u"), [policy(messages=100)])
    d = decide_call([free, execution], priority=10, model="m", estimate=ONE, now=NOW, cal=CAL)
    assert d.action is Action.ALLOW
    execution.counter.ended = NOW - 5
    d = decide_call([free, execution], priority=10, model="m", estimate=ONE, now=NOW, cal=CAL)
    assert d.action is Action.REFUSE and d.zone is Zone.NORMAL
    assert d.reason == (
        "execution ns/ex/uid-1 ended at 2025-05-20T09:59:55Z; its run token admits no more calls"
    )


# -- admission ---------------------------------------------------------------------------------------


def admit(subject: Subject, priority: int, max_wait: float | None = None) -> Decision:
    return decide_admission(
        [subject],
        priority=priority,
        model="claude-sonnet-4-5",
        now=NOW,
        cal=CAL,
        cheaper=cheaper,
        max_wait_seconds=max_wait,
    )


def test_admission_matrix() -> None:
    def at(pct: int) -> Subject:
        counter = Counter(Scope.USER, "u1")
        counter.settle("x", Amount(messages=pct), NOW - 3600, CAL)
        return user(counter)

    assert admit(at(50), 0).action is Action.ALLOW
    # throttle zone: low priority waits, normal and high start on the cheaper model
    assert admit(at(85), 2).action is Action.WAIT
    assert (admit(at(85), 5).action, admit(at(85), 5).model) == (Action.THROTTLE, "claude-haiku-4-5")
    assert admit(at(85), 9).action is Action.THROTTLE
    # critical zone: only high priority starts
    assert admit(at(96), 5).action is Action.WAIT
    assert admit(at(96), 9).action is Action.THROTTLE
    # exhausted: everyone waits
    assert admit(at(100), 10).action is Action.WAIT


def test_admission_wait_says_until_when_and_why() -> None:
    counter = Counter(Scope.USER, "u1")
    counter.settle("old", Amount(messages=50), NOW - 4 * 3600, CAL)
    counter.settle("new", Amount(messages=40), NOW - 60, CAL)
    d = admit(user(counter), priority=2)
    assert d.action is Action.WAIT and d.zone is Zone.THROTTLE
    assert d.until == CAL.bucket(NOW - 4 * 3600) + 300 + 5 * 3600
    assert "low-priority work (priority 2) starts below 80 %" in d.reason
    assert "waiting until 2025-05-20T11:05:00Z" in d.reason
    assert d.to_wire()["until"] == "2025-05-20T11:05:00Z"


def test_admission_refuses_past_the_maximum_wait_or_when_it_never_frees() -> None:
    counter = spent(Amount(messages=100), at=NOW - 60)
    d = admit(user(counter), priority=5, max_wait=600)
    assert d.action is Action.REFUSE and "after the maximum wait of 600 s" in d.reason
    execution = Subject(Counter(Scope.EXECUTION, "ns/ex"), run_policy(100, None))
    execution.counter.settle("x", Amount(tokens=100), NOW, CAL)
    d = decide_admission([execution], priority=10, model=None, now=NOW, cal=CAL)
    assert d.action is Action.REFUSE and "does not free up on its own" in d.reason


def test_policy_matching() -> None:
    p = BudgetPolicy.model_validate(
        {"name": "team-a", "scope": "agent", "match": "team-a/*", "limits": [{"window": "day", "tokens": 5}]}
    )
    assert p.applies(Scope.AGENT, "team-a/x") and not p.applies(Scope.AGENT, "team-b/x")
    assert not p.applies(Scope.USER, "team-a/x")


def test_a_runs_own_limit_admits_a_call_while_the_run_is_below_it() -> None:
    """A per-run budget smaller than one call's worst case (max_tokens) must not stop every call:
    like the runtime, the run goes on while below its limit, and stops once at or over it."""
    run = Subject(Counter(Scope.EXECUTION, "ns/ex"), run_policy(None, Decimal("0.10")))
    worst_case = Amount(tokens=8_500, messages=1, cost_nanos=124_000_000)  # $0.124 > $0.10
    assert call(run, estimate=worst_case).action is Action.ALLOW
    run.counter.settle("first", Amount(tokens=1_000, messages=1, cost_nanos=60_000_000), NOW, CAL)
    assert call(run, estimate=worst_case).action is not Action.REFUSE  # $0.06 of $0.10
    run.counter.settle("second", Amount(tokens=1_000, messages=1, cost_nanos=45_000_000), NOW, CAL)
    d = call(run, estimate=worst_case)
    assert d.action is Action.REFUSE and "policy run" in d.reason  # $0.105: at most one call over
    # The same numbers in a shared budget: the worst case must fit, so nothing overspends it.
    shared = Subject(Counter(Scope.EXECUTION, "ns/ex"), [policy_of_cost("team", Decimal("0.10"))])
    assert call(shared, estimate=worst_case).action is Action.REFUSE


def policy_of_cost(name: str, usd: Decimal) -> BudgetPolicy:
    return BudgetPolicy(name=name, scope=Scope.EXECUTION, limits=[Limit(window="total", cost_usd=usd)])
