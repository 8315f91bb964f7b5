"""Budget counters and call records: in Firestore (production) or in memory (one process).

Counters are documents `budgetCounters/<scope>:<subject>` (agentry_gateway.budgets.Counter): one per
user, agent and Execution, and, only while a budget of that scope applies, one per namespace and one
for the installation (`installation:all`). A call touches those of its run:

1. **reserve** (before the call, in one transaction over those documents): decide with
   `budgets.decide_call`; if allowed, write a reservation of the call's worst case into each.
2. **settle** (after it, in the background): replace the reservation by the actual usage.

When an Execution ends, the operator has its counter marked ended (`end_execution`): the next
reservation reads that and refuses, so a run token is dead once its run is over, not at its expiry.

Every document write goes through a per-user **combiner**: at most one transaction per user is in
flight in a gateway pod; operations that arrive meanwhile are applied together by the next one (in
arrival order, each reservation decided against the state left by the ones before it). So a pod
writes a user's documents at most once per transaction round trip whatever its call rate, and
concurrent pods only contend with each other, which Firestore's transactions serialise. Call
records (`llmCalls/<id>`, one document per call, written once) carry the metering details.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from agentry_common.governance import INSTALLATION_SUBJECT, BudgetSubjects, Scope
from agentry_common.records import Collection

from .budgets import (
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
    decide_admission,
    decide_call,
)

log = logging.getLogger("agentry.gateway.ledger")

# Firestore TTL policies (configured on these fields) delete old call records and run counters.
CALL_RECORD_DAYS = 90
EXECUTION_COUNTER_DAYS = 30


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
class _Op:
    subjects: Subjects
    future: asyncio.Future[Any]


@dataclass
class _Reserve(_Op):
    rid: str
    estimate: Amount
    priority: int
    model: str
    cheaper: CheaperModel


@dataclass
class _Settle(_Op):
    rid: str
    actual: Amount


@dataclass
class LedgerStats:
    transactions: int = 0
    operations: int = 0
    expired_reservations: int = 0


class Ledger:
    """Shared logic; subclasses load and store counter documents (and call records)."""

    def __init__(
        self,
        policies: Sequence[BudgetPolicy],
        calendar: Calendar,
        thresholds: Thresholds,
        keep_seconds: int,
        clock: Callable[[], float] = time.time,
        settle_delay: float = 0.5,
    ) -> None:
        self.policies = list(policies)
        self.settle_delay = settle_delay
        self.calendar = calendar
        self.thresholds = thresholds
        self.keep_seconds = keep_seconds
        self.clock = clock
        self.stats = LedgerStats()
        self._queues: dict[str, list[_Op]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    # -- storage (subclasses) -------------------------------------------------------------------------

    async def _transact(self, ids: list[str], fn: Callable[[dict[str, Counter]], list[str]]) -> None:
        """Load the counters `ids`, run fn (which mutates them and returns the ids it changed) and
        store the changed ones atomically; fn may run more than once (transaction retries)."""
        raise NotImplementedError

    async def _load(self, ids: list[str]) -> dict[str, Counter]:
        raise NotImplementedError

    async def record_call(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    async def ping(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

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

    async def reserve(
        self,
        subjects: Subjects,
        *,
        estimate: Amount,
        priority: int,
        model: str,
        cheaper: CheaperModel,
        rid: str | None = None,
    ) -> tuple[str, Decision]:
        """Decide on a call and, if allowed, reserve its estimate. Returns (reservation id, decision)."""
        reservation = rid or uuid.uuid4().hex
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._submit(_Reserve(subjects, future, reservation, estimate, priority, model, cheaper))
        decision: Decision = await future
        return reservation, decision

    async def settle(self, subjects: Subjects, rid: str, actual: Amount) -> None:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._submit(_Settle(subjects, future, rid, actual))
        await future

    async def end_execution(self, execution: str) -> bool:
        """Mark an Execution's counter ended: its run tokens' calls are refused from now on (in the
        reservation transaction, which reads that document anyway). True if it was not ended yet."""
        cid = counter_id(Scope.EXECUTION, execution)
        newly: list[bool] = []

        def fn(counters: dict[str, Counter]) -> list[str]:
            newly.clear()
            counter = counters[cid]
            if counter.ended is not None:
                return []
            counter.ended = counter.updated = self.clock()
            newly.append(True)
            return [cid]

        await self._transact([cid], fn)
        return bool(newly)

    async def snapshot(self, subjects: Subjects) -> list[Subject]:
        counters = await self._load(self.ids(subjects))
        return self.subject_list(subjects, counters)

    async def admission(
        self,
        subjects: Subjects,
        *,
        priority: int,
        model: str | None,
        cheaper: CheaperModel,
        max_wait_seconds: float | None,
    ) -> Decision:
        now = self.clock()
        return decide_admission(
            await self.snapshot(subjects),
            priority=priority,
            model=model,
            now=now,
            cal=self.calendar,
            thresholds=self.thresholds,
            cheaper=cheaper,
            max_wait_seconds=max_wait_seconds,
        )

    # -- the combiner ----------------------------------------------------------------------------------

    async def _submit(self, op: _Op) -> None:
        key = op.subjects.user
        self._queues.setdefault(key, []).append(op)
        if isinstance(op, _Settle) and self.settle_delay > 0:
            # Settlements wait a little: the next reservation of the same user (a run's next call
            # often follows at once) takes them into its transaction, so a call does not queue
            # behind its predecessor's settlement, and back-to-back calls cost one write, not two.
            # Until then the reservation (>= the usage, up to the input estimate) stays counted.
            asyncio.get_running_loop().call_later(self.settle_delay, self._kick, key)
            return
        self._kick(key)

    def _kick(self, key: str) -> None:
        worker = self._workers.get(key)
        if self._queues.get(key) and (worker is None or worker.done()):
            self._workers[key] = asyncio.create_task(self._drain(key))

    async def _drain(self, key: str) -> None:
        try:
            while self._queues.get(key):
                batch = self._queues.pop(key)
                try:
                    results = await self._apply(batch)
                except Exception as exc:
                    log.exception("budget transaction failed for %d operation(s)", len(batch))
                    for op in batch:
                        if not op.future.done():
                            op.future.set_exception(exc)
                    continue
                for op, result in zip(batch, results, strict=True):
                    if not op.future.done():
                        op.future.set_result(result)
        finally:
            self._workers.pop(key, None)

    async def _apply(self, batch: list[_Op]) -> list[Any]:
        ids: list[str] = []
        for op in batch:
            for cid in self.ids(op.subjects):
                if cid not in ids:
                    ids.append(cid)
        results: list[Any] = []

        def fn(counters: dict[str, Counter]) -> list[str]:
            results.clear()
            now = self.clock()
            changed: set[str] = set()
            for cid, counter in counters.items():
                expired = counter.prune(now, self.calendar, self.keep_seconds)
                if expired:
                    self.stats.expired_reservations += len(expired)
                    log.warning("%s: %d reservation(s) expired and were counted as spent", cid, len(expired))
                    changed.add(cid)
            for op in batch:
                op_ids = self.ids(op.subjects)
                if isinstance(op, _Reserve):
                    decision = decide_call(
                        self.subject_list(op.subjects, counters),
                        priority=op.priority,
                        model=op.model,
                        estimate=op.estimate,
                        now=now,
                        cal=self.calendar,
                        thresholds=self.thresholds,
                        cheaper=op.cheaper,
                    )
                    if decision.allowed:
                        for cid in op_ids:
                            counters[cid].reserve(op.rid, op.estimate, now)
                            changed.add(cid)
                    results.append(decision)
                elif isinstance(op, _Settle):
                    for cid in op_ids:
                        counters[cid].settle(op.rid, op.actual, now, self.calendar)
                        changed.add(cid)
                    results.append(None)
            return sorted(changed)

        await self._transact(ids, fn)
        self.stats.transactions += 1
        self.stats.operations += len(batch)
        return list(results)


def _scope_subject(cid: str) -> tuple[Scope, str]:
    scope, _, safe = cid.partition(":")
    return Scope(scope), safe.replace("%2F", "/").replace("%25", "%")


class MemoryLedger(Ledger):
    """Counters in this process only (development, benchmarks). Same documents, same logic."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.docs: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    async def _load(self, ids: list[str]) -> dict[str, Counter]:
        return {cid: Counter.from_doc(*_scope_subject(cid), self.docs.get(cid)) for cid in ids}

    async def _transact(self, ids: list[str], fn: Callable[[dict[str, Counter]], list[str]]) -> None:
        async with self._lock:
            counters = await self._load(ids)
            for cid in fn(counters):
                self.docs[cid] = counters[cid].to_doc()

    async def record_call(self, record: dict[str, Any]) -> None:
        self.calls.append(record)

    async def ping(self) -> None:
        return None


class FirestoreLedger(Ledger):
    """Counters and call records in Firestore (`client`: a google.cloud.firestore.AsyncClient)."""

    max_attempts = 40  # per transaction, by the library (each commit that aborts is retried)

    def __init__(self, client: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def _ref(self, cid: str) -> Any:
        return self.client.collection(Collection.BUDGET_COUNTERS).document(cid)

    async def _load(self, ids: list[str]) -> dict[str, Counter]:
        refs = [self._ref(cid) for cid in ids]
        docs: dict[str, dict[str, Any] | None] = {}
        async for snap in self.client.get_all(refs):
            docs[snap.id] = snap.to_dict() if snap.exists else None
        return {cid: Counter.from_doc(*_scope_subject(cid), docs.get(cid)) for cid in ids}

    async def _transact(self, ids: list[str], fn: Callable[[dict[str, Counter]], list[str]]) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud.firestore import AsyncTransaction, async_transactional

        refs = {cid: self._ref(cid) for cid in ids}
        expire_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=EXECUTION_COUNTER_DAYS)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> None:
            docs: dict[str, dict[str, Any] | None] = {}
            async for snap in self.client.get_all(list(refs.values()), transaction=transaction):
                docs[snap.id] = snap.to_dict() if snap.exists else None
            counters = {cid: Counter.from_doc(*_scope_subject(cid), docs.get(cid)) for cid in ids}
            for cid in fn(counters):
                doc = counters[cid].to_doc()
                if counters[cid].scope is Scope.EXECUTION:
                    doc["expireAt"] = expire_at
                transaction.set(refs[cid], doc)

        # The library retries a commit that aborts; a read that meets a lock held by another pod's
        # transaction can abort too: retried here, with jittered backoff.
        for attempt in range(1, 6):
            try:
                await txn(self.client.transaction(max_attempts=self.max_attempts))
                return
            except (gexc.Aborted, ValueError) as exc:
                if attempt == 5:
                    raise
                log.info("budget transaction contended (%s), retrying", exc)
                await asyncio.sleep(random.uniform(0.01, 0.5) * attempt)

    async def record_call(self, record: dict[str, Any]) -> None:
        doc = dict(record)
        doc["expireAt"] = dt.datetime.now(dt.UTC) + dt.timedelta(days=CALL_RECORD_DAYS)
        await self.client.collection(Collection.LLM_CALLS).document(str(record["id"])).set(doc)

    async def ping(self) -> None:
        await self.client.collection(Collection.BUDGET_COUNTERS).document("_ping").get()

    async def close(self) -> None:
        await super().close()
        api = getattr(self.client, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()
