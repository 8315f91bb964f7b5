"""The call and admission decisions: allow, throttle, wait or refuse, and why."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agentry_common.governance import Action, Scope, Zone

from .amounts import Amount
from .policies import RUN_POLICY, Calendar, Thresholds
from .states import Decision, LimitState, Subject, fmt, when
from .throttles import steer_admission, steer_call

CheaperModel = Callable[[str], str | None]


def _no_cheaper(model: str) -> str | None:
    return None


def _standing(states: Sequence[LimitState], th: Thresholds) -> tuple[LimitState | None, float, Zone, str]:
    """The most used limit, its use in percent, the zone that puts the subject in, and its words."""
    top = max(states, key=lambda s: s.pct, default=None)
    pct = top.pct if top is not None else 0.0
    return top, pct, th.zone(pct), top.describe() if top is not None else "no budget applies"


def _throttled(model: str | None, cheaper: CheaperModel) -> tuple[str | None, str]:
    if model is None:
        return None, "the cheaper model of the routing table will be used"
    substitute = cheaper(model)
    if substitute is None or substitute == model:
        return model, f"no cheaper model than {model} in the routing table: {model} is kept"
    return substitute, f"using the cheaper model {substitute} instead of {model}"


def _own(state: LimitState) -> bool:
    """A run's own limit (RUN_POLICY), as opposed to a shared budget policy."""
    return state.policy == RUN_POLICY and state.scope is Scope.EXECUTION


def decide_call(
    subjects: Sequence[Subject],
    *,
    priority: int,
    model: str,
    estimate: Amount,
    now: float,
    cal: Calendar,
    thresholds: Thresholds | None = None,
    cheaper: CheaperModel = _no_cheaper,
) -> Decision:
    """Mid-run: may this model call go ahead (and on which model)? Made with the reservation, under
    the counters' transaction. The call's estimate must fit under every shared limit (at 100 %
    nothing passes); a run's own limits (RUN_POLICY) only need the run to be below them, as the
    runtime counts them: its worst case (max_tokens) is often more than a small per-run budget,
    and a run's calls are one at a time, so it overspends by at most the call in flight; they are
    a hard cap, without zones. Zones (of the shared budgets):
    normal as asked; throttle: the cheaper model; critical: only high priority (cheaper model),
    others are refused; exhausted: refused. An Execution that has ended (its counter's `ended`) gets
    no more calls at all."""
    th = thresholds or Thresholds()
    decision = _budget_call(subjects, priority, model, estimate, now, cal, th, cheaper)
    return steer_call(decision, subjects, now, cheaper)  # an admin's manual throttles, if any


def _budget_call(
    subjects: Sequence[Subject],
    priority: int,
    model: str,
    estimate: Amount,
    now: float,
    cal: Calendar,
    th: Thresholds,
    cheaper: CheaperModel,
) -> Decision:
    states = tuple(s for subject in subjects for s in subject.states(now, cal))
    ended = next((s.counter for s in subjects if s.counter.ended is not None), None)
    if ended is not None:  # its run is over: a token still held (a late or stolen one) gets nothing
        return Decision(
            Action.REFUSE,
            _standing(tuple(s for s in states if not _own(s)), th)[2],
            f"{ended.scope.value} {ended.subject} ended at {when(ended.ended)}; its run token "
            "admits no more calls",
            priority,
            model,
            limits=states,
        )
    exceeded = _exceeded(states, estimate, th, priority, model)
    if exceeded is not None:
        return exceeded
    return _call_zone(states, th, priority, model, cheaper)


def _exceeded(
    states: tuple[LimitState, ...], estimate: Amount, th: Thresholds, priority: int, model: str
) -> Decision | None:
    """A refusal if the call's estimate does not fit under a shared limit, or the run is at its own."""
    for state in sorted(states, key=lambda s: -s.pct):
        use = state.used + state.reserved
        if use >= state.limit if _own(state) else use + estimate.get(state.metric) > state.limit:
            zone = th.zone(state.pct)
            return Decision(
                Action.REFUSE,
                zone,
                f"budget exhausted: {state.describe()}; this call may use up to "
                f"{fmt(state.metric, estimate.get(state.metric))} more, "
                f"{fmt(state.metric, max(0, state.limit - use))} is left",
                priority,
                model,
                None,
                None,
                state,
                states,
            )
    return None


def _call_zone(
    states: tuple[LimitState, ...], th: Thresholds, priority: int, model: str, cheaper: CheaperModel
) -> Decision:
    """A call that fits: what the zone of the shared budgets makes of it."""
    # A run's own limits are a hard cap (checked before), without zones.
    top, _, zone, where = _standing(tuple(s for s in states if not _own(s)), th)
    if zone is Zone.NORMAL:
        return Decision(
            Action.ALLOW, zone, f"normal zone: {where}", priority, model, model, None, top, states
        )
    klass = th.priority_class(priority)
    if zone is Zone.THROTTLE or (zone is Zone.CRITICAL and klass == "high"):
        chosen, note = _throttled(model, cheaper)
        band = f"{th.throttle:g}-{th.critical:g} %" if zone is Zone.THROTTLE else f">= {th.critical:g} %"
        return Decision(
            Action.THROTTLE,
            zone,
            f"{zone.value} zone ({band}): {where}; {note}",
            priority,
            model,
            chosen,
            None,
            top,
            states,
        )
    return Decision(
        Action.REFUSE,
        zone,
        f"{zone.value} zone (>= {th.critical:g} %): only priority >= {th.high_priority} work may continue, "
        f"this run has priority {priority}: {where}",
        priority,
        model,
        None,
        None,
        top,
        states,
    )


def decide_admission(
    subjects: Sequence[Subject],
    *,
    priority: int,
    model: str | None,
    now: float,
    cal: Calendar,
    thresholds: Thresholds | None = None,
    cheaper: CheaperModel = _no_cheaper,
    max_wait_seconds: float | None = None,
) -> Decision:
    """Before a run starts: allow, throttle (start on the cheaper model), wait (until the window
    frees) or refuse (it would not free within `max_wait_seconds`, or never on its own).

    Low priority starts below the throttle threshold, normal below the critical one, high below
    100 %. In between, work that may start does so on the cheaper model."""
    th = thresholds or Thresholds()
    decision = _budget_admission(subjects, priority, model, now, cal, th, cheaper, max_wait_seconds)
    return steer_admission(decision, subjects, now, th, cheaper, max_wait_seconds)


def _budget_admission(
    subjects: Sequence[Subject],
    priority: int,
    model: str | None,
    now: float,
    cal: Calendar,
    th: Thresholds,
    cheaper: CheaperModel,
    max_wait_seconds: float | None,
) -> Decision:
    states = tuple(s for subject in subjects for s in subject.states(now, cal))
    top, pct, zone, where = _standing(states, th)
    if zone is Zone.NORMAL:
        return Decision(
            Action.ALLOW, zone, f"normal zone: {where}", priority, model, model, None, top, states
        )
    below = th.admit_below(priority)
    klass = th.priority_class(priority)
    if pct < below:
        chosen, note = _throttled(model, cheaper)
        return Decision(
            Action.THROTTLE,
            zone,
            f"{zone.value} zone: {where}; {klass}-priority work (priority {priority}) starts; {note}",
            priority,
            model,
            chosen,
            None,
            top,
            states,
        )
    blocking = [s for s in states if s.pct >= below]
    until = _frees_at(subjects, blocking, below, now, cal)
    binding = max(blocking, key=lambda s: s.pct)
    why = (
        f"{zone.value} zone: {binding.describe()}; {klass}-priority work (priority {priority}) "
        f"starts below {below:g} %"
    )
    return _wait_or_refuse(why, zone, until, now, max_wait_seconds, priority, model, binding, states)


def _frees_at(
    subjects: Sequence[Subject], blocking: Sequence[LimitState], below: float, now: float, cal: Calendar
) -> float | None:
    """When every limit at or above the bar has fallen below it; None if one never does on its own."""
    by_subject = {(s.counter.scope, s.counter.subject): s.counter for s in subjects}
    until: float | None = now
    for state in blocking:
        counter = by_subject[(state.scope, state.subject)]
        target = state.limit * below / 100.0
        frees = counter.frees_at(state.window, state.metric, target, now, cal)
        until = None if frees is None or until is None else max(until, frees)
    return until


def _wait_or_refuse(
    why: str,
    zone: Zone,
    until: float | None,
    now: float,
    max_wait_seconds: float | None,
    priority: int,
    model: str | None,
    binding: LimitState,
    states: tuple[LimitState, ...],
) -> Decision:
    if until is None:
        return Decision(
            Action.REFUSE,
            zone,
            f"{why}, and this budget does not free up on its own",
            priority,
            model,
            None,
            None,
            binding,
            states,
        )
    if max_wait_seconds is not None and until - now > max_wait_seconds:
        return Decision(
            Action.REFUSE,
            zone,
            f"{why}; it frees at {when(until)}, after the maximum wait of {max_wait_seconds:g} s",
            priority,
            model,
            None,
            until,
            binding,
            states,
        )
    return Decision(
        Action.WAIT,
        zone,
        f"{why}; waiting until {when(until)}",
        priority,
        model,
        None,
        until,
        binding,
        states,
    )
