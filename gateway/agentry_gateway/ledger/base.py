"""The budget ledger's public API (`Ledger`: reserve, settle, end an Execution, read counters) and its
per-user combiner; the stores are in `stores`, the logic of one transaction in `core`, leases in
`leases`.

Every document write goes through a per-user **combiner**: at most one transaction per user is in
flight in a gateway pod; operations that arrive meanwhile are applied together by the next one (in
arrival order, each reservation decided against the state left by the ones before it). So a pod
writes a user's documents at most once per transaction round trip whatever its call rate, and
concurrent pods only contend with each other, which Firestore's transactions serialise.

A lease is rewritten by a transaction (a **flush**: its settled usage written, its size set again)
when settlements have waited `settle_delay`, at once when it is half used (so the next calls never
wait for it to run out), and when it expires idle (its spare given back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from agentry_common.governance import Scope

from ..budgets import (
    Amount,
    CheaperModel,
    Counter,
    Decision,
    Subject,
    counter_id,
    decide_admission,
    scope_subject,
)
from .core import Flush, LedgerCore, Op, Reserve, Settle, Subjects
from .leases import LEASE_SECONDS, Lease

log = logging.getLogger("agentry.gateway.ledger")


class Ledger(LedgerCore):
    """The budget ledger: decide and reserve a call, settle it, end an Execution, read counters."""

    _closing = False

    # -- storage (subclasses) -------------------------------------------------------------------------

    async def _docs(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """The counters' stored documents (None: none stored yet)."""
        raise NotImplementedError

    async def _load(self, ids: list[str]) -> dict[str, Counter]:
        return self._counters(ids, await self._docs(ids))

    @staticmethod
    def _counters(ids: list[str], docs: dict[str, dict[str, Any] | None]) -> dict[str, Counter]:
        return {cid: Counter.from_doc(*scope_subject(cid), docs.get(cid)) for cid in ids}

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
            await self._submit(Flush(subjects, flushes[-1], give_back=True))
            self._kick(subjects.user)
        self._closing = True  # no give-back timer starts a transaction from now on
        for timer in self._expiry.values():
            timer.cancel()
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
        usable and admits it (leases.py); None: the call goes through a transaction."""
        lease = self._leases.get(tuple(self.ids(op.subjects)))
        now = self.clock()
        if lease is None or not lease.usable(now, op.estimate):
            return None
        decision = op.decide(
            self.subject_list(op.subjects, lease.view()), now, self.calendar, self.thresholds
        )
        if not decision.allowed:
            return None  # refusals are decided on fresh counters, in a transaction
        lease.admit(op.rid, op.estimate)
        self._lease_of_call[op.rid] = lease.ids
        self.stats.leased += 1
        self._refill(lease, op.subjects)
        return decision

    def _expire_later(self, key: tuple[str, ...]) -> None:
        timer = self._expiry.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._expiry[key] = asyncio.get_running_loop().call_later(LEASE_SECONDS, self._expired, key)

    def _expired(self, key: tuple[str, ...]) -> None:
        """A lease no transaction rewrote for LEASE_SECONDS: give its spare back, unless calls are in
        flight (their settlements rewrite it) or a transaction is about to."""
        self._expiry.pop(key, None)
        lease = self._leases.get(key)
        if self._closing or lease is None or lease.pending or lease.inflight or key in self._flushes:
            return
        self._flush_now(Flush(self._lease_subjects[key], _unawaited(), give_back=True))

    def _refill(self, lease: Lease, subjects: Subjects) -> None:
        """A lease half used is rewritten (flushed and resized) now, while it still admits calls
        (Lease.usable): a run's next calls do not wait for a transaction when it runs out."""
        if lease.pending or not lease.half_used():
            return
        if lease.ids in self._flushes:
            self._kick(subjects.user)  # the flush settlements queued: now, not after settle_delay
        else:
            self._flush_now(Flush(subjects, self._flushes.setdefault(lease.ids, _unawaited())))

    def _flush_now(self, flush: Flush) -> None:
        """Queue a lease's flush and start its user's transaction without `settle_delay`."""
        self._queues.setdefault(flush.subjects.user, []).append(flush)
        self._kick(flush.subjects.user)

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
            self._refill(lease, subjects)
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

    async def ended_at(self, execution: str) -> float | None:
        """When an Execution was ended (`end_execution`), or None: read fresh, never from a lease."""
        cid = counter_id(Scope.EXECUTION, execution)
        # The one field, not the whole counter: this is read for every call that carries journal
        # entries, and a run's counter holds a bucket per window it spent in.
        return Counter.ended_in((await self._docs([cid])).get(cid))

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


def _unawaited() -> asyncio.Future[Any]:
    """The future of a flush nobody waits for (a failure is logged by the combiner)."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future
