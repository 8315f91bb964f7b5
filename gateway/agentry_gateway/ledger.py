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

With **leases** (the Firestore ledger's default; `ledger_leases`), a transaction that admits a call
may reserve spare estimates for the same counters, and the pod then admits their next calls from that
reservation without a transaction, settling them locally until the next one writes them. The shared
logic (subjects, the batch a transaction applies) is in `ledger_core`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable
from typing import Any

from agentry_common.governance import Scope
from agentry_common.records import Collection

from .budgets import (
    Amount,
    CheaperModel,
    Counter,
    Decision,
    Subject,
    counter_id,
    decide_admission,
)
from .ledger_core import Flush, LedgerCore, LedgerStats, Op, Reserve, Settle, Subjects
from .ledger_pods import GONE_AFTER_SECONDS, HEARTBEAT_SECONDS, PodHeartbeat

__all__ = ["FirestoreLedger", "Ledger", "LedgerStats", "MemoryLedger", "Subjects"]

log = logging.getLogger("agentry.gateway.ledger")

# Firestore TTL policies (configured on these fields) delete old call records and run counters.
CALL_RECORD_DAYS = 90
EXECUTION_COUNTER_DAYS = 30
# Call records written within this long of each other share one batched commit: under load one RPC
# per call record costs the event loop more than the calls' own relaying.
RECORD_BATCH_SECONDS = 0.05
RECORD_BATCH_MAX = 500  # Firestore's limit of writes per batch


class Ledger(LedgerCore):
    """The budget ledger: decide and reserve a call, settle it, end an Execution, read counters."""

    # -- storage (subclasses) -------------------------------------------------------------------------

    async def _load(self, ids: list[str]) -> dict[str, Counter]:
        raise NotImplementedError

    async def record_call(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    async def ping(self) -> None:
        raise NotImplementedError

    def pods_gone(self) -> int:
        """Other gateway pods seen gone (a ledger shared between pods tells; one alone has none)."""
        return 0

    async def close(self) -> None:
        # Give back what the leases hold beyond the calls in flight.
        flushes: list[asyncio.Future[Any]] = []
        for key in list(self._leases):
            subjects = self._lease_subjects[key]
            flushes.append(asyncio.get_running_loop().create_future())
            await self._submit(Flush(subjects, flushes[-1]))
            self._kick(subjects.user)
        await asyncio.gather(*flushes, return_exceptions=True)
        for task in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- public ----------------------------------------------------------------------------------------

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
        op = Reserve(
            subjects,
            asyncio.get_running_loop().create_future(),
            reservation,
            estimate,
            priority,
            model,
            cheaper,
        )
        local = self._from_lease(op)
        if local is not None:
            return reservation, local
        await self._submit(op)
        decision: Decision = await op.future
        return reservation, decision

    def _from_lease(self, op: Reserve) -> Decision | None:
        """The call decided and reserved locally in this pod's lease on its counters, if one is
        usable and admits it (ledger_leases); None: the call goes through a transaction."""
        lease = self._leases.get(tuple(self.ids(op.subjects)))
        now = self.clock()
        if lease is None or not lease.usable(now, op.estimate):
            return None
        decision = op.decide(
            self.subject_list(op.subjects, lease.view()), now, self.calendar, self.thresholds
        )
        if not decision.allowed:
            return None  # refusals are decided on fresh counters, in a transaction
        lease.inflight[op.rid] = op.estimate
        self._lease_of_call[op.rid] = lease.ids
        self.stats.leased += 1
        return decision

    async def settle(self, subjects: Subjects, rid: str, actual: Amount) -> None:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        lease = self._leases.get(self._lease_of_call.pop(rid, ()))
        if lease is not None and rid in lease.inflight:
            # Kept in the lease; one flush writes it with every other settled in the meantime.
            del lease.inflight[rid]
            lease.consumed = lease.consumed + actual
            pending = self._flushes.get(lease.ids)
            if pending is None:
                pending = self._flushes[lease.ids] = future
                await self._submit(Flush(subjects, future))
            await asyncio.shield(pending)
            return
        else:
            await self._submit(Settle(subjects, future, rid, actual))
        await future

    async def end_execution(self, execution: str) -> bool:
        """Mark an Execution's counter ended: its run tokens' calls are refused from now on (in the
        reservation transaction, which reads that document anyway). True if it was not ended yet."""
        cid = counter_id(Scope.EXECUTION, execution)
        newly: list[bool] = []
        for lease in self._leases.values():  # their next calls read the counter again
            if cid in lease.ids:
                lease.taken = float("-inf")

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

    async def _submit(self, op: Op) -> None:
        key = op.subjects.user
        self._queues.setdefault(key, []).append(op)
        if isinstance(op, Settle | Flush) and self.settle_delay > 0:
            # Settlements wait a little: the next reservation of the same user (a run's next call
            # often follows at once) takes them into its transaction, so a call does not queue
            # behind its predecessor's settlement, and back-to-back calls cost one write, not two.
            # Until then the reservation (>= the usage, up to the input estimate) stays counted.
            self._kick_later(key)
            return
        self._kick(key)

    def _kick_later(self, key: str) -> None:
        """One delayed kick per user at a time: writes queued meanwhile go in the same transaction."""
        if key not in self._delayed:
            self._delayed[key] = asyncio.get_running_loop().call_later(self.settle_delay, self._kick, key)

    def _kick(self, key: str) -> None:
        delayed = self._delayed.pop(key, None)
        if delayed is not None:
            delayed.cancel()  # a no-op when it is what called
        worker = self._workers.get(key)
        if self._queues.get(key) and (worker is None or worker.done()):
            self._workers[key] = asyncio.create_task(self._drain(key))

    def _only_writes(self, key: str) -> bool:
        """Only settlements and flushes queued (no call waits), and they may wait."""
        return self.settle_delay > 0 and not any(isinstance(op, Reserve) for op in self._queues[key])

    async def _drain(self, key: str) -> None:
        try:
            first = True
            while self._queues.get(key):
                if not first and self._only_writes(key):
                    # Settlements that came during the transaction wait like any other (up to
                    # settle_delay, or the next reservation), not one transaction right after another.
                    self._kick_later(key)
                    break
                first = False
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

    def __init__(
        self, client: Any, *args: Any, gone_after: float = GONE_AFTER_SECONDS, **kwargs: Any
    ) -> None:
        kwargs.setdefault("leases", True)  # a transaction per call is what leases save
        super().__init__(*args, **kwargs)
        self.client = client
        self.heartbeat = PodHeartbeat(
            client, self.pod, every=min(HEARTBEAT_SECONDS, gone_after / 3), gone_after=gone_after
        )
        self._records: list[dict[str, Any]] = []
        self._records_written: asyncio.Future[None] | None = None

    def _ref(self, cid: str) -> Any:
        return self.client.collection(Collection.BUDGET_COUNTERS).document(cid)

    async def _load(self, ids: list[str]) -> dict[str, Counter]:
        refs = [self._ref(cid) for cid in ids]
        docs: dict[str, dict[str, Any] | None] = {}
        async for snap in self.client.get_all(refs):
            docs[snap.id] = snap.to_dict() if snap.exists else None
        return {cid: Counter.from_doc(*_scope_subject(cid), docs.get(cid)) for cid in ids}

    def gone_pods(self) -> frozenset[str]:
        return self.heartbeat.gone

    async def _transact(self, ids: list[str], fn: Callable[[dict[str, Counter]], list[str]]) -> None:
        await self.heartbeat.ensure()
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
        """Write a call record (`llmCalls/<id>`), batched with the others of the next few ms; returns
        once its batch is committed."""
        doc = dict(record)
        doc["expireAt"] = dt.datetime.now(dt.UTC) + dt.timedelta(days=CALL_RECORD_DAYS)
        self._records.append(doc)
        written = self._records_written
        if written is None:
            loop = asyncio.get_running_loop()
            written = self._records_written = loop.create_future()
            loop.call_later(RECORD_BATCH_SECONDS, lambda: loop.create_task(self._write_records()))
        await asyncio.shield(written)

    async def _write_records(self) -> None:
        docs, written = self._records, self._records_written
        self._records, self._records_written = [], None
        if written is None:
            return
        try:
            for start in range(0, len(docs), RECORD_BATCH_MAX):
                batch = self.client.batch()
                for doc in docs[start : start + RECORD_BATCH_MAX]:
                    batch.set(self.client.collection(Collection.LLM_CALLS).document(str(doc["id"])), doc)
                await batch.commit()
        except Exception as exc:
            written.set_exception(exc)
            written.exception()  # retrieved: each waiting caller gets it and logs it
        else:
            written.set_result(None)

    async def ping(self) -> None:
        await self.client.collection(Collection.BUDGET_COUNTERS).document("_ping").get()

    def pods_gone(self) -> int:
        return len(self.heartbeat.gone)

    async def close(self) -> None:
        await super().close()
        await self.heartbeat.stop()
        await self._write_records()
        api = getattr(self.client, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()
