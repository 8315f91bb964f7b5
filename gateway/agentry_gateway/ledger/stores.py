"""The budget ledger's stores: in Firestore (production) or in memory (one process); the package
docstring (`agentry_gateway.ledger`) describes the counters and the combiner."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from agentry_common.contention import transact
from agentry_common.governance import Scope
from agentry_common.records import Collection

from ..budgets import Counter
from .base import Ledger
from .pods import GONE_AFTER_SECONDS, HEARTBEAT_SECONDS, PodHeartbeat

__all__ = ["FirestoreLedger", "MemoryLedger"]


# Firestore TTL policies (configured on these fields) delete old call records and run counters.
CALL_RECORD_DAYS = 90
EXECUTION_COUNTER_DAYS = 30
# Call records written within this long of each other share one batched commit: under load one RPC
# per call record costs the event loop more than the calls' own relaying, and so do commits much more
# frequent than this (bench/gateway_vs_litellm.py).
RECORD_BATCH_SECONDS = 0.25
RECORD_BATCH_MAX = 500  # Firestore's limit of writes per batch


class MemoryLedger(Ledger):
    """Counters in this process only (development, benchmarks). Same documents, same logic."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.docs: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    async def _docs(self, ids: list[str]) -> dict[str, dict[str, Any] | None]:
        return {cid: self.docs.get(cid) for cid in ids}

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

    async def _docs(self, ids: list[str], transaction: Any = None) -> dict[str, dict[str, Any] | None]:
        refs = [self._ref(cid) for cid in ids]
        docs: dict[str, dict[str, Any] | None] = {}
        async for snap in self.client.get_all(refs, transaction=transaction):
            docs[snap.id] = snap.to_dict() if snap.exists else None
        return docs

    def gone_pods(self) -> frozenset[str]:
        return self.heartbeat.gone

    async def _transact(self, ids: list[str], fn: Callable[[dict[str, Counter]], list[str]]) -> None:
        await self.heartbeat.ensure()
        from google.cloud.firestore import AsyncTransaction, async_transactional

        refs = {cid: self._ref(cid) for cid in ids}
        expire_at = dt.datetime.now(dt.UTC) + dt.timedelta(days=EXECUTION_COUNTER_DAYS)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> None:
            counters = self._counters(ids, await self._docs(ids, transaction))
            for cid in fn(counters):
                doc = counters[cid].to_doc()
                if counters[cid].scope is Scope.EXECUTION:
                    doc["expireAt"] = expire_at
                transaction.set(refs[cid], doc)

        # Counters are shared by every pod's runs: no lock of this pod's would help.
        await transact(self.client, txn, "a budget's counters", attempts=self.max_attempts, pause=0.5)

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
