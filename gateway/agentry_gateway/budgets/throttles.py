"""Manual throttles: an admin forces a subject into a zone, whatever its budgets say (pure).

A throttle rides in the ledger's policy list as a policy without limits (`ManualThrottle`), so it
reaches every decision the way policies do (`applicable`, `Subject.policies`), in every pod, on the
lease path too. The budget decides first; a throttle can only make the answer stricter:

* mode `throttle`: the throttle zone — calls go to the cheaper model; at admission low-priority runs
  wait (until the throttle's end, or `RECHECK_SECONDS` when it has none), the others start throttled;
* mode `refuse`: every call refused; a run waits for the throttle's end if that is within its maximum
  wait, else is refused.

The admin's reason is in the decision's explanation, which the user sees on their decisions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from pydantic import Field

from agentry_common.governance import Action, ThrottleMode, ThrottleSpec, Zone

from .policies import BudgetPolicy, Limit, Thresholds
from .states import Decision, Subject, when

# A waiting run is asked again this often while an open-ended throttle holds it.
RECHECK_SECONDS = 300.0
_ZONE_ORDER = (Zone.NORMAL, Zone.THROTTLE, Zone.CRITICAL, Zone.EXHAUSTED)


class ManualThrottle(BudgetPolicy):
    """A throttle as a policy: `match` is the throttled subject (pattern), no limits of its own."""

    limits: list[Limit] = Field(default_factory=list, max_length=0)
    id: str
    mode: ThrottleMode
    reason: str
    until: float | None = None
    by: str = ""

    @classmethod
    def of(cls, spec: ThrottleSpec) -> ManualThrottle:
        return cls(
            name=f"throttle:{spec.id}",
            scope=spec.scope,
            match=spec.subject,
            id=spec.id,
            mode=spec.mode,
            reason=spec.reason,
            until=spec.until,
            by=spec.by,
        )

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    def explain(self) -> str:
        end = f"until {when(self.until)}" if self.until is not None else "until lifted"
        what = "refused" if self.mode is ThrottleMode.REFUSE else "throttled"
        return f"{what} by an admin ({self.scope.value} {self.match}, {end}): {self.reason}"


def manual(subjects: Sequence[Subject], now: float) -> list[ManualThrottle]:
    """The active throttles on a call's subjects, refusals first."""
    found = [
        p
        for s in subjects
        for p in s.policies  # the ledger passes only those that apply; checked again all the same
        if isinstance(p, ManualThrottle) and p.active(now) and p.applies(s.counter.scope, s.counter.subject)
    ]
    return sorted(found, key=lambda t: t.mode is not ThrottleMode.REFUSE)


def _worse(a: Zone, b: Zone) -> Zone:
    return max(a, b, key=_ZONE_ORDER.index)


def _cheaper(decision: Decision, cheaper: Callable[[str], str | None]) -> str | None:
    """The model a throttled call or run uses: what the budget already chose, else the cheaper one."""
    if decision.action is Action.THROTTLE or decision.model is None:
        return decision.model
    return cheaper(decision.model) or decision.model


def steer_call(
    decision: Decision, subjects: Sequence[Subject], now: float, cheaper: Callable[[str], str | None]
) -> Decision:
    """A call the budget admitted, as the active throttles leave it (a refusal stands as it is)."""
    found = manual(subjects, now)
    if not found or not decision.allowed:
        return decision
    first = found[0]
    if first.mode is ThrottleMode.REFUSE:
        why = first.explain()
        return replace(decision, action=Action.REFUSE, zone=Zone.EXHAUSTED, reason=why, model=None)
    model = _cheaper(decision, cheaper)
    note = f"using the cheaper model {model}" if model != decision.requested_model else "no cheaper model"
    return replace(
        decision,
        action=Action.THROTTLE,
        zone=_worse(decision.zone, Zone.THROTTLE),
        reason=f"{first.explain()}; {note} ({decision.reason})",
        model=model,
    )


def steer_admission(
    decision: Decision,
    subjects: Sequence[Subject],
    now: float,
    thresholds: Thresholds,
    cheaper: Callable[[str], str | None],
    max_wait_seconds: float | None,
) -> Decision:
    """A run's admission as the active throttles leave it (a budget's refusal or wait stands)."""
    found = manual(subjects, now)
    if not found or decision.action in (Action.REFUSE, Action.WAIT):
        return decision
    first = found[0]
    low = thresholds.priority_class(decision.priority) == "low"
    if first.mode is ThrottleMode.REFUSE or low:
        ends = [t.until for t in found if t.mode is first.mode]
        until = None if None in ends else max(e for e in ends if e is not None)
        if first.mode is ThrottleMode.THROTTLE and until is None:
            until = now + RECHECK_SECONDS  # open-ended: asked again, it starts once lifted
        return _hold(decision, first, until, now, max_wait_seconds)
    model = _cheaper(decision, cheaper)
    return replace(
        decision,
        action=Action.THROTTLE,
        zone=_worse(decision.zone, Zone.THROTTLE),
        reason=f"{first.explain()}; priority {decision.priority} starts on {model}",
        model=model,
    )


def _hold(
    decision: Decision, throttle: ManualThrottle, until: float | None, now: float, max_wait: float | None
) -> Decision:
    """Wait until the throttle's end, or refuse when it has none or it is past the maximum wait."""
    zone = Zone.EXHAUSTED if throttle.mode is ThrottleMode.REFUSE else _worse(decision.zone, Zone.THROTTLE)
    why = throttle.explain()
    if until is None or (max_wait is not None and until - now > max_wait):
        more = "" if until is None else f"; it ends at {when(until)}, after the maximum wait ({max_wait:g} s)"
        return replace(decision, action=Action.REFUSE, zone=zone, reason=why + more, model=None, until=None)
    why = f"{why}; waiting until {when(until)}"
    return replace(decision, action=Action.WAIT, zone=zone, reason=why, model=None, until=until)
