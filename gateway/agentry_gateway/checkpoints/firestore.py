"""Journals in Firestore: `runCheckpoints/{namespace}.{uid}` (the head: who, `last`, `bytes`, times)
and its `entries` subcollection (one document per entry, id = the zero-padded seq).

An append is one transaction on the head: read `last` (and, for a retry, the stored signatures of
its seqs), then write the entries and the head. Two pods appending the same seq contend on the head
document: Firestore serialises them, and the second one, run again, reads the first one's `last`
(409, or 200 when it was the same batch). The run's steering inbox (inbox.py) lives beside it: its
state on the head, its messages in the `inbox` subcollection. An entry is stored as its canonical
JSON (opaque to the gateway; Firestore's own types cannot hold every JSON value, e.g. nested arrays).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Final

from agentry_common.checkpoints import CHECKPOINT_COLLECTION, Close, Entry, PrunedRun
from agentry_common.contention import KeyedLocks, transact
from agentry_common.steering import (
    INBOX_COLLECTION,
    MAX_MESSAGES,
    Inbox,
    MessageState,
    SteerAnswer,
    SteerMessage,
    SteerRequest,
)

from .inbox import InboxHead, admit, message_doc, take
from .store import (
    RETENTION_DAYS,
    Appended,
    Entries,
    Limits,
    Page,
    RunRef,
    batch_of,
    decide,
    needs_stored,
    page_of,
)

ENTRIES: Final = "entries"
INBOX: Final = INBOX_COLLECTION  # steering messages, id the zero-padded inbox seq
READ_CHUNK: Final = 16  # entries per query while filling a page (each up to MAX_ENTRY_BYTES)
DELETE_BATCH: Final = 500  # Firestore's limit of writes per batch


def _entry_id(seq: int) -> str:
    return f"{seq:08d}"  # MAX_RUN_ENTRIES fits: ids sort like seqs


class FirestoreCheckpointStore:
    """`client`: a google.cloud.firestore.AsyncClient (the ledger's)."""

    def __init__(
        self, client: Any, limits: Limits | None = None, retention_days: int = RETENTION_DAYS
    ) -> None:
        self.client = client
        self.limits = limits or Limits()
        self.retention = dt.timedelta(days=retention_days)
        self._locks = KeyedLocks()

    def _head(self, run: RunRef) -> Any:
        return self.client.collection(CHECKPOINT_COLLECTION).document(run.doc_id)

    async def append(
        self, run: RunRef, entries: Entries, delivered: Sequence[int] = (), close: Close | None = None
    ) -> Appended:
        from google.cloud.firestore import AsyncTransaction, async_transactional

        batch = batch_of(entries, self.limits)
        head_ref = self._head(run)
        refs = {e.seq: head_ref.collection(ENTRIES).document(_entry_id(e.seq)) for e in batch.entries}

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Appended:
            snap = await head_ref.get(transaction=transaction)
            head: dict[str, Any] = (snap.to_dict() or {}) if snap.exists else {}
            last, stored_bytes = int(head.get("last", 0)), int(head.get("bytes", 0))
            sigs: dict[int, str] = {}
            if needs_stored(batch, last):
                async for doc in self.client.get_all(list(refs.values()), transaction=transaction):
                    if doc.exists:
                        sigs[int(doc.get("seq"))] = str(doc.get("sig"))
            written = decide(batch, last, stored_bytes, sigs, self.limits)
            inbox = InboxHead.of(head)
            marked, refused = take(inbox, delivered, close)
            if not written and not marked and not refused and inbox.closed == bool(head.get("closed")):
                return Appended(last, 0, inbox.hint, inbox.closed)
            now = dt.datetime.now(dt.UTC)
            expire = now + self.retention
            if written:
                for entry, encoded in zip(batch.entries, batch.encoded, strict=True):
                    doc = {
                        "seq": entry.seq,
                        "sig": entry.sig,
                        "entry": encoded.decode(),
                        "bytes": len(encoded),
                    }
                    transaction.set(refs[entry.seq], {**doc, "expireAt": expire})
            self._mark(transaction, head_ref, marked, MessageState.DELIVERED)
            self._mark(transaction, head_ref, refused, MessageState.REFUSED)
            end, total = (batch.end, batch.total) if written else (last, 0)
            transaction.set(
                head_ref,
                {
                    "namespace": run.namespace,
                    "execution": head.get("execution") or run.execution,
                    "uid": run.uid,
                    "agent": head.get("agent") or run.agent,
                    "last": end,
                    "bytes": stored_bytes + total,
                    "createdAt": head.get("createdAt") or now,
                    "updatedAt": now,
                    "expireAt": expire,
                    **inbox.fields(),
                },
            )
            return Appended(end, total, inbox.hint, inbox.closed)

        done: Appended = await self._serially(run, txn)
        return done

    async def _serially(self, run: RunRef, txn: Any) -> Any:
        """One transaction per run's head at a time in this pod: a run appends one batch after
        another anyway, and concurrent transactions on one document only contend. Other pods still
        contend with it: `transact` retries those."""
        return await transact(self.client, txn, "a run's checkpoints", self._locks(run.doc_id))

    @staticmethod
    def _mark(transaction: Any, head_ref: Any, seqs: list[int], state: MessageState) -> None:
        for seq in seqs:  # written without a read: a message's state is the only field that changes
            transaction.set(
                head_ref.collection(INBOX).document(_entry_id(seq)), {"state": state.value}, merge=True
            )

    async def post(self, run: RunRef, req: SteerRequest) -> SteerAnswer:
        from google.cloud.firestore import AsyncTransaction, async_transactional

        head_ref = self._head(run)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> SteerAnswer:
            snap = await head_ref.get(transaction=transaction)
            inbox = InboxHead.of((snap.to_dict() or {}) if snap.exists else {})
            message, superseded = admit(inbox, req)
            now = dt.datetime.now(dt.UTC)
            doc = {**message_doc(message), "expireAt": now + self.retention}
            transaction.set(head_ref.collection(INBOX).document(_entry_id(message.seq)), doc)
            self._mark(transaction, head_ref, superseded, MessageState.SUPERSEDED)
            who = {"namespace": run.namespace, "uid": run.uid, "updatedAt": now}
            if not snap.exists:  # a run that has not appended yet: the head is born here
                who |= {"execution": run.execution, "createdAt": now, "expireAt": now + self.retention}
            transaction.set(head_ref, {**who, **inbox.fields()}, merge=True)
            return SteerAnswer(message=message, superseded=superseded)

        answer: SteerAnswer = await self._serially(run, txn)
        return answer

    async def inbox(self, run: RunRef, after: int, every: bool = False) -> Inbox:
        head_ref = self._head(run)
        snap = await head_ref.get()
        if not snap.exists:
            return Inbox()
        head = InboxHead.of(snap.to_dict() or {})
        box = head_ref.collection(INBOX)
        if every:
            docs = [d async for d in box.order_by("seq").limit(MAX_MESSAGES).stream()]
        else:
            wanted = [box.document(_entry_id(s)) for s in sorted(head.queued) if s > after]
            docs = [d async for d in self.client.get_all(wanted)] if wanted else []
        found = [SteerMessage.model_validate(_message(d.to_dict() or {})) for d in docs if d.exists]
        return Inbox(messages=sorted(found, key=lambda m: m.seq), last=head.hint, closed=head.closed)

    async def read(self, run: RunRef, after: int) -> Page:
        from google.cloud.firestore import FieldFilter

        head_ref = self._head(run)
        snap = await head_ref.get()
        if not snap.exists:
            return Page(last=0)
        head = snap.to_dict() or {}
        last = int(head.get("last", 0))
        got: list[tuple[Entry, int]] = []
        total, cursor = 0, after
        while cursor < last and total <= self.limits.page_bytes:
            query = (
                head_ref.collection(ENTRIES)
                .where(filter=FieldFilter("seq", ">", cursor))
                .order_by("seq")
                .limit(READ_CHUNK)
            )
            chunk = [
                (Entry.model_validate_json(d.get("entry")), int(d.get("bytes"))) async for d in query.stream()
            ]
            if not chunk:
                break  # entries gone below `last` (a TTL ran first): the runtime's chain check tells
            got += chunk
            total += sum(size for _, size in chunk)
            cursor = chunk[-1][0].seq
        out, more = page_of(got, last, self.limits)
        return Page(last=last, execution=str(head.get("execution", "")), entries=out, more=more)

    async def prune(self, runs: list[PrunedRun]) -> int:
        pruned = 0
        for r in runs:
            head_ref = self._head(RunRef(r.namespace, r.uid))
            refs = [
                ref
                for sub in (ENTRIES, INBOX)
                async for ref in head_ref.collection(sub).list_documents(page_size=DELETE_BATCH)
            ]
            for start in range(0, len(refs), DELETE_BATCH):
                batch = self.client.batch()
                for ref in refs[start : start + DELETE_BATCH]:
                    batch.delete(ref)
                await batch.commit()
            if (await head_ref.get()).exists:
                pruned += 1
                await head_ref.delete()
        return pruned

    async def close(self) -> None:
        return None  # the client is the ledger's, closed with it


def _message(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "expireAt"}
