"""The API's Firestore store. Every per-user read takes the user id and filters on it.

Collections (see docs/api.md): users, tokens, agents, executions, events, eventKeys, approvals,
conversations; read only: llmCalls (written by the LLM gateway, docs/governance.md). Times are
ISO-8601 UTC strings with microseconds, so they sort as text.

Events are numbered per user by a counter on the user's document, in the same transaction as the
event itself: once event N+1 is visible, event N is too, which is what makes `Last-Event-ID` replay
exact. A dedupe key (optional) makes publishing idempotent across watcher restarts and replicas.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

from google.cloud.firestore import AsyncClient, AsyncTransaction, async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter

Doc = dict[str, Any]

USERS, TOKENS, AGENTS, EXECUTIONS = "users", "tokens", "agents", "executions"
EVENTS, EVENT_KEYS, APPROVALS, CONVERSATIONS = "events", "eventKeys", "approvals", "conversations"
LLM_CALLS = "llmCalls"  # the gateway's call records (agentry_gateway.ledger.CALLS)


TXN_ATTEMPTS = 20


class Contended(Exception):
    """A transaction kept conflicting with concurrent writers; the caller may retry."""


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_client(project: str, database: str = "(default)") -> AsyncClient:
    return AsyncClient(project=project, database=database)


def valid_doc_id(doc_id: str) -> bool:
    """Whether Firestore accepts this as a document id: a path segment that is not `.`, `..` or
    reserved (`__*__`). Ids from URLs are checked first: an id Firestore refuses is one no document
    has (404), not a store failure (it answered INVALID_ARGUMENT, which read as 503)."""
    return (
        0 < len(doc_id) <= 400
        and "/" not in doc_id
        and doc_id not in (".", "..")
        and not (doc_id.startswith("__") and doc_id.endswith("__"))
    )


def _key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def event_doc_id(user_id: str, seq: int) -> str:
    return f"{_key_id(user_id)[:16]}-{seq:012d}"


class Store:
    def __init__(self, client: AsyncClient) -> None:
        self.db = client

    async def close(self) -> None:
        """Close the gRPC channel (the async client has no close of its own)."""
        api = getattr(self.db, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()

    async def ping(self) -> None:
        await self.db.collection(USERS).document("_ping").get()

    # -- generic --------------------------------------------------------------------------------

    async def _get(self, collection: str, doc_id: str) -> Doc | None:
        if not valid_doc_id(doc_id):
            return None
        snap = await self.db.collection(collection).document(doc_id).get()
        return snap.to_dict() if snap.exists else None

    async def _owned(self, collection: str, doc_id: str, user_id: str) -> Doc | None:
        """A document if it exists and belongs to the user; None otherwise (no way to tell which)."""
        doc = await self._get(collection, doc_id)
        if doc is None or doc.get("userId") != user_id or doc.get("deleted"):
            return None
        return doc

    # -- users and tokens -----------------------------------------------------------------------

    async def ensure_user(self, user_id: str, kind: str, display: str | None = None) -> Doc:
        ref = self.db.collection(USERS).document(user_id)
        snap = await ref.get()
        if snap.exists:
            return snap.to_dict() or {}
        doc = {"id": user_id, "kind": kind, "displayName": display or user_id, "createdAt": now_iso()}
        await ref.set(doc, merge=True)
        return doc

    async def get_user(self, user_id: str) -> Doc | None:
        return await self._get(USERS, user_id)

    async def create_token(self, token_hash: str, doc: Doc) -> None:
        await self.db.collection(TOKENS).document(token_hash).create(doc)

    async def token(self, token_hash: str) -> Doc | None:
        doc = await self._get(TOKENS, token_hash)
        return None if doc is None or doc.get("revoked") else doc

    async def touch_token(self, token_hash: str) -> None:
        await self.db.collection(TOKENS).document(token_hash).update({"lastUsedAt": now_iso()})

    async def list_tokens(self, user_id: str) -> list[Doc]:
        q = self.db.collection(TOKENS).where(filter=FieldFilter("userId", "==", user_id))
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted((d for d in docs if not d.get("revoked")), key=lambda d: d["createdAt"])

    async def revoke_token(self, user_id: str, public_id: str) -> bool:
        q = (
            self.db.collection(TOKENS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("id", "==", public_id))
        )
        found = False
        async for snap in q.stream():
            await snap.reference.update({"revoked": True, "revokedAt": now_iso()})
            found = True
        return found

    # -- agents ---------------------------------------------------------------------------------

    async def agent(self, agent_id: str) -> Doc | None:
        """Unscoped read (the watcher and syncer); routes use `owned_agent`."""
        if not agent_id or "/" in agent_id:
            return None
        return await self._get(AGENTS, agent_id)

    async def owned_agent(self, user_id: str, agent_id: str) -> Doc | None:
        return await self._owned(AGENTS, agent_id, user_id)

    async def create_agent(self, doc: Doc) -> None:
        await self.db.collection(AGENTS).document(doc["id"]).create(doc)

    async def put_agent(self, doc: Doc) -> None:
        await self.db.collection(AGENTS).document(doc["id"]).set(doc)

    async def update_agent(self, agent_id: str, fields: Doc) -> None:
        await self.db.collection(AGENTS).document(agent_id).update(fields)

    async def remove_agent(self, agent_id: str) -> None:
        await self.db.collection(AGENTS).document(agent_id).delete()

    async def list_agents(self, user_id: str) -> list[Doc]:
        q = self.db.collection(AGENTS).where(filter=FieldFilter("userId", "==", user_id))
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted((d for d in docs if not d.get("deleted")), key=lambda d: d.get("createdAt", ""))

    async def agents_pending_sync(self) -> list[Doc]:
        q = self.db.collection(AGENTS).where(filter=FieldFilter("sync.state", "==", "Pending"))
        return [d.to_dict() or {} async for d in q.stream()]

    # -- executions -----------------------------------------------------------------------------

    async def execution(self, name: str) -> Doc | None:
        if not name or "/" in name:
            return None
        return await self._get(EXECUTIONS, name)

    async def owned_execution(self, user_id: str, name: str) -> Doc | None:
        return await self._owned(EXECUTIONS, name, user_id)

    async def put_execution(self, doc: Doc, merge: bool = False) -> None:
        await self.db.collection(EXECUTIONS).document(doc["id"]).set(doc, merge=merge)

    async def list_executions(
        self,
        user_id: str,
        *,
        agent_id: str | None = None,
        phase: str | None = None,
        limit: int = 20,
        after: tuple[str, str] | None = None,
        since: str | None = None,
    ) -> list[Doc]:
        """Newest first; `after` is the (createdAt, id) of the last item of the previous page."""
        q = self.db.collection(EXECUTIONS).where(filter=FieldFilter("userId", "==", user_id))
        if agent_id:
            q = q.where(filter=FieldFilter("agentId", "==", agent_id))
        if phase:
            q = q.where(filter=FieldFilter("phase", "==", phase))
        if since:
            q = q.where(filter=FieldFilter("createdAt", ">=", since))
        q = q.order_by("createdAt", direction="DESCENDING").order_by("id", direction="DESCENDING")
        if after is not None:
            q = q.start_after({"createdAt": after[0], "id": after[1]})
        return [d.to_dict() or {} async for d in q.limit(limit).stream()]

    # -- events ---------------------------------------------------------------------------------

    async def append_event(
        self, user_id: str, kind: str, data: Doc, dedupe_key: str | None = None
    ) -> Doc | None:
        """Append an event to the user's stream; None if `dedupe_key` was already published."""
        user_ref = self.db.collection(USERS).document(user_id)
        key_ref = self.db.collection(EVENT_KEYS).document(_key_id(dedupe_key)) if dedupe_key else None
        events = self.db.collection(EVENTS)

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc | None:
            if key_ref is not None:
                key_snap = await key_ref.get(transaction=transaction)
                if key_snap.exists:
                    return None
            user_snap = await user_ref.get(transaction=transaction)
            seq = int((user_snap.to_dict() or {}).get("eventSeq", 0)) + 1 if user_snap.exists else 1
            event = {"userId": user_id, "seq": seq, "kind": kind, "data": data, "createdAt": now_iso()}
            transaction.set(events.document(event_doc_id(user_id, seq)), event)
            transaction.set(user_ref, {"eventSeq": seq}, merge=True)
            if key_ref is not None:
                transaction.set(key_ref, {"userId": user_id, "seq": seq, "createdAt": event["createdAt"]})
            return event

        try:
            result: Doc | None = await txn(self.db.transaction(max_attempts=TXN_ATTEMPTS))
        except ValueError as exc:  # the library's "failed to commit in N attempts"
            raise Contended(f"the event stream of a user is too busy: {exc}") from exc
        return result

    async def last_event_seq(self, user_id: str) -> int:
        user = await self.get_user(user_id)
        return int((user or {}).get("eventSeq", 0))

    async def events_after(self, user_id: str, seq: int, limit: int = 500) -> list[Doc]:
        q = (
            self.db.collection(EVENTS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("seq", ">", seq))
            .order_by("seq")
            .limit(limit)
        )
        return [d.to_dict() or {} async for d in q.stream()]

    async def execution_events(self, user_id: str, execution: str, limit: int = 1000) -> list[Doc]:
        q = (
            self.db.collection(EVENTS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("data.execution", "==", execution))
            .limit(limit)
        )
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted(docs, key=lambda d: int(d["seq"]))

    # -- approvals ------------------------------------------------------------------------------

    async def approval(self, approval_id: str) -> Doc | None:
        return await self._get(APPROVALS, _key_id(approval_id))

    async def owned_approval(self, user_id: str, approval_id: str) -> Doc | None:
        if not approval_id or len(approval_id) > 128:
            return None
        doc = await self.approval(approval_id)
        return doc if doc is not None and doc.get("userId") == user_id else None

    async def create_approval(self, doc: Doc) -> bool:
        """Create once; False if it exists already (idempotent across watcher restarts)."""
        ref = self.db.collection(APPROVALS).document(_key_id(doc["id"]))

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> bool:
            snap = await ref.get(transaction=transaction)
            if snap.exists:
                return False
            transaction.set(ref, doc)
            return True

        created: bool = await txn(self.db.transaction())
        return created

    async def decide_approval(self, approval_id: str, fields: Doc) -> Doc | None:
        """Move a pending approval to decided; None if it was not pending (someone decided first)."""
        ref = self.db.collection(APPROVALS).document(_key_id(approval_id))

        @async_transactional
        async def txn(transaction: AsyncTransaction) -> Doc | None:
            snap = await ref.get(transaction=transaction)
            doc = snap.to_dict() if snap.exists else None
            if doc is None or doc.get("state") != "pending":
                return None
            doc.update(fields)
            transaction.set(ref, doc)
            return doc

        result: Doc | None = await txn(self.db.transaction())
        return result

    async def update_approval(self, approval_id: str, fields: Doc) -> None:
        await self.db.collection(APPROVALS).document(_key_id(approval_id)).update(fields)

    async def list_approvals(self, user_id: str, state: str | None = None, limit: int = 100) -> list[Doc]:
        q = self.db.collection(APPROVALS).where(filter=FieldFilter("userId", "==", user_id))
        if state:
            q = q.where(filter=FieldFilter("state", "==", state))
        docs = [d.to_dict() or {} async for d in q.limit(limit).stream()]
        return sorted(docs, key=lambda d: d.get("requestedAt") or "", reverse=True)

    async def approvals_of(self, user_id: str, execution: str) -> list[Doc]:
        """Every approval of one execution, whatever its state."""
        q = (
            self.db.collection(APPROVALS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("execution", "==", execution))
        )
        return [d.to_dict() or {} async for d in q.stream()]

    async def expired_approvals(self, now: str) -> list[Doc]:
        q = (
            self.db.collection(APPROVALS)
            .where(filter=FieldFilter("state", "==", "pending"))
            .where(filter=FieldFilter("expiresAt", "<=", now))
        )
        return [d.to_dict() or {} async for d in q.stream()]

    # -- conversations --------------------------------------------------------------------------

    async def conversation(self, user_id: str, conv_id: str) -> Doc | None:
        return await self._owned(CONVERSATIONS, conv_id, user_id)

    async def put_conversation(self, doc: Doc) -> None:
        await self.db.collection(CONVERSATIONS).document(doc["id"]).set(doc)

    async def list_conversations(self, user_id: str) -> list[Doc]:
        q = self.db.collection(CONVERSATIONS).where(filter=FieldFilter("userId", "==", user_id))
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted(docs, key=lambda d: d.get("updatedAt", ""), reverse=True)

    # -- LLM calls (the gateway's records) --------------------------------------------------------

    def _calls_of(self, namespace: str, execution: str, uid: str | None) -> Any:
        """One Execution's call records: by its uid when known (an earlier Execution of the same name
        had other calls), else by its name. Ownership is the caller's business: these records carry
        no API user id."""
        field, value = ("executionUid", uid) if uid else ("execution", execution)
        return (
            self.db.collection(LLM_CALLS)
            .where(filter=FieldFilter(field, "==", value))
            .where(filter=FieldFilter("namespace", "==", namespace))
        )

    async def execution_calls(self, namespace: str, execution: str, uid: str | None, limit: int) -> list[Doc]:
        """The first `limit` call records of one Execution, oldest first (ties by call id)."""
        q = self._calls_of(namespace, execution, uid).order_by("ts").limit(limit)
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted(docs, key=lambda d: (_number(d.get("ts")), str(d.get("id", ""))))

    async def execution_call_totals(self, namespace: str, execution: str, uid: str | None) -> dict[str, int]:
        """Count and sums over all of one Execution's call records, however many (aggregation queries:
        nothing is read but the results): `calls`, `inputTokens`, `outputTokens`, `costNanos`,
        `fallbacks`, `retries`."""
        query = self._calls_of(namespace, execution, uid)
        # Firestore takes at most five aggregations per query: two queries, side by side.
        head = (
            query.count(alias="calls")
            .sum("inputTokens", alias="inputTokens")
            .sum("outputTokens", alias="outputTokens")
            .sum("charged.costNanos", alias="costNanos")
            .sum("fallbacks", alias="fallbacks")
        )
        tail = query.sum("retries", alias="retries")
        names = ("calls", "inputTokens", "outputTokens", "costNanos", "fallbacks", "retries")
        totals = dict.fromkeys(names, 0)
        for rows in await asyncio.gather(head.get(), tail.get()):
            for row in rows:
                totals.update({result.alias: int(result.value or 0) for result in row})
        return totals

    # -- usage ----------------------------------------------------------------------------------

    async def executions_since(self, user_id: str, since: str, fields: Sequence[str] = ()) -> list[Doc]:
        q = (
            self.db.collection(EXECUTIONS)
            .where(filter=FieldFilter("userId", "==", user_id))
            .where(filter=FieldFilter("createdAt", ">=", since))
        )
        if fields:
            q = q.select(list(fields))
        return [d.to_dict() or {} async for d in q.stream()]
