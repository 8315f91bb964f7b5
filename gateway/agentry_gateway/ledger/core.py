"""The ledger's core: who a call is charged to (`Subjects`), the operations the combiner batches,
and what one batch does inside its transaction (decisions, reservations, settlements, leases).
`base` adds the public API and the combiner, `stores` the stores."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentry_common.governance import INSTALLATION_SUBJECT, BudgetSubjects, Scope

from ..budgets import (
    Amount,
    BudgetPolicy,
    Calendar,
    CheaperModel,
    Counter,
    Decision,
    Subject,
    Thresholds,
    applicable,
    counter_id,
    decide_call,
)
from .leases import Lease, LeasePlan, commit, flush_plan, hold, scaled, spare_for
from .pods import new_pod_id

log = logging.getLogger("agentry.gateway.ledger")


@dataclass(frozen=True)
class Subjects:
    """Who a call is charged to: the run token's user, agent and Execution, its namespace (default:
    the agent's) and the installation. A user token's calls have no Execution (`execution` empty) and
    a pseudo-agent shared by every user (`shared_agent`: counted only while a budget applies to it)."""

    user: str
    agent: str  # <namespace>/<name>
    execution: str  # <namespace>/<name>[/<uid>]; "" for none
    run_policies: tuple[BudgetPolicy, ...] = ()
    namespace: str = ""
    installation: str = INSTALLATION_SUBJECT
    shared_agent: bool = False

    @classmethod
    def of(cls, names: BudgetSubjects, run_policies: tuple[BudgetPolicy, ...] = ()) -> Subjects:
        return cls(
            names.user, names.agent, names.execution, run_policies, names.namespace, names.installation
        )

    def scopes(self) -> list[tuple[Scope, str]]:
        """Every subject, the shared ones (namespace, installation) last; no Execution when none."""
        scopes = [(Scope.USER, self.user), (Scope.AGENT, self.agent)]
        if self.execution:
            scopes.append((Scope.EXECUTION, self.execution))
        scopes.append((Scope.NAMESPACE, self.namespace or self.agent.partition("/")[0]))
        scopes.append((Scope.INSTALLATION, self.installation))
        return scopes

    def shared(self) -> tuple[Scope, ...]:
        """The scopes whose counters other users' calls share: touched only while a budget applies."""
        shared = (Scope.NAMESPACE, Scope.INSTALLATION)
        return (Scope.AGENT, *shared) if self.shared_agent else shared


@dataclass
class Op:
    subjects: Subjects
    future: asyncio.Future[Any]


@dataclass
class Reserve(Op):
    rid: str
    estimate: Amount
    priority: int
    model: str
    cheaper: CheaperModel

    def decide(self, subjects: list[Subject], now: float, cal: Calendar, thresholds: Thresholds) -> Decision:
        """The budget decision for this call against `subjects` (fresh counters, or a lease's view)."""
        return decide_call(
            subjects,
            priority=self.priority,
            model=self.model,
            estimate=self.estimate,
            now=now,
            cal=cal,
            thresholds=thresholds,
            cheaper=self.cheaper,
        )


@dataclass
class Settle(Op):
    rid: str
    actual: Amount


@dataclass
class Flush(Op):
    """Write a lease's settled usage (leases.py); `give_back`: its spare too, if it is idle."""

    give_back: bool = False


@dataclass
class LedgerStats:
    transactions: int = 0
    operations: int = 0
    expired_reservations: int = 0
    leased: int = 0  # calls admitted from a lease, without a transaction


class LedgerCore:
    """Shared logic; subclasses load and store counter documents (and call records)."""

    def __init__(
        self,
        policies: Sequence[BudgetPolicy],
        calendar: Calendar,
        thresholds: Thresholds,
        keep_seconds: int,
        clock: Callable[[], float] = time.time,
        settle_delay: float = 0.5,
        leases: bool = False,
    ) -> None:
        self.policies = list(policies)
        self.use_leases = leases
        self._leases: dict[tuple[str, ...], Lease] = {}
        self._lease_subjects: dict[tuple[str, ...], Subjects] = {}
        self._lease_of_call: dict[str, tuple[str, ...]] = {}
        self._flushes: dict[tuple[str, ...], asyncio.Future[Any]] = {}  # one pending flush per lease
        self._delayed: dict[str, asyncio.TimerHandle] = {}  # a user's pending delayed kick
        self._expiry: dict[tuple[str, ...], asyncio.TimerHandle] = {}  # a lease's idle give-back
        self.settle_delay = settle_delay
        self.calendar = calendar
        self.thresholds = thresholds
        self.keep_seconds = keep_seconds
        self.clock = clock
        self.pod = new_pod_id()  # this process: marks the reservations it makes (pods.py)
        self.stats = LedgerStats()
        self._queues: dict[str, list[Op]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    # -- storage (subclasses) -------------------------------------------------------------------------

    async def _transact(self, ids: list[str], fn: Callable[[dict[str, Counter]], list[str]]) -> None:
        """Load the counters `ids`, run fn (which mutates them and returns the ids it changed) and
        store the changed ones atomically; fn may run more than once (transaction retries)."""
        raise NotImplementedError

    def gone_pods(self) -> frozenset[str]:
        """Gateway pods known to be gone: their reservations are counted now (FirestoreLedger)."""
        return frozenset()

    def _expire_later(self, key: tuple[str, ...]) -> None:
        """After a transaction wrote the lease `key`: give its spare back once it expires idle."""

    # -- public ----------------------------------------------------------------------------------------

    def scopes(self, subjects: Subjects) -> list[tuple[Scope, str]]:
        """The counters a call of `subjects` touches: its user, agent and Execution always; its
        namespace and the installation only while a budget applies to them (each of those documents
        is shared by many users' calls: untouched, it costs no transaction contention); likewise a
        user token's pseudo-agent."""
        shared = subjects.shared()
        return [
            (scope, key)
            for scope, key in subjects.scopes()
            if scope not in shared or applicable(self.policies, scope, key)
        ]

    def ids(self, subjects: Subjects) -> list[str]:
        return [counter_id(scope, key) for scope, key in self.scopes(subjects)]

    def cost_limit(self, subjects: Subjects) -> str | None:
        """A limit in USD that applies to a call of `subjects`, in words; None if none does."""
        for scope, key in self.scopes(subjects):
            policies = applicable(self.policies, scope, key)
            if scope is Scope.EXECUTION:
                policies = policies + list(subjects.run_policies)
            for policy in policies:
                for limit in policy.limits:
                    if limit.cost_usd is not None:
                        return (
                            f"policy {policy.name} limits {scope.value} {key} to ${limit.cost_usd} "
                            f"per {limit.window_spec.label}"
                        )
        return None

    def subject_list(self, subjects: Subjects, counters: dict[str, Counter]) -> list[Subject]:
        out: list[Subject] = []
        for scope, key in self.scopes(subjects):
            policies = applicable(self.policies, scope, key)
            if scope is Scope.EXECUTION:
                policies = policies + list(subjects.run_policies)
            out.append(Subject(counters[counter_id(scope, key)], policies))
        return out

    # -- one batch, in its transaction ---------------------------------------------------------------

    async def _apply(self, batch: list[Op]) -> list[Any]:
        ids: list[str] = []
        for op in batch:
            for cid in self.ids(op.subjects):
                if cid not in ids:
                    ids.append(cid)
        keys: dict[tuple[str, ...], Subjects] = {}
        kept: set[tuple[str, ...]] = set()  # leases an op of this batch other than a give-back uses
        for op in batch:
            key = tuple(self.ids(op.subjects))
            keys.setdefault(key, op.subjects)
            if not (isinstance(op, Flush) and op.give_back):
                kept.add(key)
        giving_back = keys.keys() - kept
        for key in keys:  # local admissions meanwhile are bounded by the plan (Lease.usable)
            if key in self._leases:
                self._leases[key].pending = True
            self._flushes.pop(key, None)  # settlements from now on wait for the next flush
        results: list[Any] = []
        plans: dict[tuple[str, ...], LeasePlan] = {}
        state: dict[str, Counter] = {}
        changed: set[str] = set()

        def fn(counters: dict[str, Counter]) -> list[str]:
            results.clear()
            plans.clear()
            changed.clear()
            now = self.clock()
            for counter in counters.values():
                counter.writer = self.pod
            self._prune(counters, now, changed)
            for key in keys:
                if key in self._leases:
                    plans[key] = flush_plan(
                        self._leases[key], counters, now, self.calendar, key in giving_back
                    )
                    changed.update(key)
            for op in batch:
                results.append(self._apply_op(op, counters, plans, changed, now))
            self._add_spares(keys, counters, plans, now)
            for key, plan in plans.items():
                if key in self._leases:
                    self._leases[key].planned(plan)
            state.clear()
            state.update(counters)
            return sorted(changed)

        try:
            await self._transact(ids, fn)
        except BaseException:
            for key in keys:  # nothing written: the leases stand as they were, and expire
                if key in self._leases:
                    self._leases[key].settled_transaction()
                    self._expire_later(key)
            raise
        self._committed(keys, plans, state, changed)
        self.stats.transactions += 1
        self.stats.operations += len(batch)
        return list(results)

    def _prune(self, counters: dict[str, Counter], now: float, changed: set[str]) -> None:
        gone = self.gone_pods()
        for cid, counter in counters.items():
            expired = counter.prune(now, self.calendar, self.keep_seconds, gone)
            if expired:
                self.stats.expired_reservations += len(expired)
                log.warning("%s: %d reservation(s) expired and were counted as spent", cid, len(expired))
                changed.add(cid)

    def _apply_op(
        self,
        op: Op,
        counters: dict[str, Counter],
        plans: dict[tuple[str, ...], LeasePlan],
        changed: set[str],
        now: float,
    ) -> Any:
        """One operation inside the transaction; its result for the caller."""
        op_ids = self.ids(op.subjects)
        if isinstance(op, Settle):
            for cid in op_ids:
                counters[cid].settle(op.rid, op.actual, now, self.calendar)
                changed.add(cid)
        if not isinstance(op, Reserve):
            return None
        subjects = self.subject_list(op.subjects, counters)
        decision = op.decide(subjects, now, self.calendar, self.thresholds)
        if not decision.allowed:
            return decision
        key = tuple(op_ids)
        plan = plans.get(key)
        if (
            plan is None
            and self.use_leases
            and spare_for(subjects, op.estimate, now, self.thresholds, self.calendar)
        ):
            plan = plans[key] = LeasePlan(f"lease-{uuid.uuid4().hex}", Amount(), Amount())
        if plan is not None:  # the call is served from the lease
            plan.held = plan.held + op.estimate
            plan.calls[op.rid] = plan.unit = op.estimate
            hold(plan, op_ids, counters, now)
        else:
            for cid in op_ids:
                counters[cid].reserve(op.rid, op.estimate, now)
        changed.update(op_ids)
        return decision

    def _add_spares(
        self,
        keys: dict[tuple[str, ...], Subjects],
        counters: dict[str, Counter],
        plans: dict[tuple[str, ...], LeasePlan],
        now: float,
    ) -> None:
        """A lease in use (a call admitted by this transaction, or calls in flight) holds spare
        estimates for the next calls, as many as keep its counters below the throttle zone."""
        for key, plan in plans.items():
            if plan.unit is None:
                continue
            subjects = self.subject_list(keys[key], counters)
            lease = self._leases.get(key)
            busy = len(plan.calls) + (max(len(lease.inflight), lease.peak) if lease is not None else 0)
            spare = spare_for(subjects, plan.unit, now, self.thresholds, self.calendar, most=2 * busy)
            plan.held = plan.held + scaled(plan.unit, spare)
            hold(plan, key, counters, now)

    def _committed(
        self,
        keys: dict[tuple[str, ...], Subjects],
        plans: dict[tuple[str, ...], LeasePlan],
        state: dict[str, Counter],
        changed: set[str],
    ) -> None:
        """After a commit: the leases as written; this pod's other leases on changed counters are
        stale (their next call reads the counters again)."""
        now = self.clock()
        for key, plan in plans.items():
            lease = self._leases.get(key) or Lease(key, plan.rid)
            if commit(lease, plan, state, now):
                self._leases[key], self._lease_subjects[key] = lease, keys[key]
                for rid in plan.calls:
                    self._lease_of_call[rid] = key
                self._expire_later(key)
            else:
                self._leases.pop(key, None)
                self._lease_subjects.pop(key, None)
        for key, lease in self._leases.items():
            if key not in plans and changed.intersection(key):
                lease.taken = float("-inf")
