"""The trigger receiver (`POST /hooks/<trigger>`): no session, the signature is the caller's credential.

Order, cheapest refusal first: the trigger (cached for CACHE_SECONDS per replica, with its key), the
body read up to its limit (413), the signature (401, compared in constant time), suspension (409),
the rate (429: a token bucket per trigger in each API replica), the payload (400), the mapping. Then
the delivery is claimed in Firestore (create-if-absent, keyed by the trigger's uid and the delivery's
key): a copy answers 202 with the run the first one started (`duplicate`). Every delivery is recorded
for the dashboard with its body's digest and size, never the body (refusals at a bounded rate).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentry_common import constants as c
from agentry_common.models import Trigger as ModelTrigger
from agentry_common.models import looks_like_secret
from agentry_common.resources import Trigger, WorkflowRun
from agentry_common.triggers import (
    HEADER_GITHUB_DELIVERY,
    HEADER_GITHUB_EVENT,
    HEADER_ID,
    Outcome,
    Refusal,
    Scheme,
    TriggerSpec,
    body_digest,
    run_name,
    verify_generic,
    verify_github,
)

from ..auth import owner_label
from ..cluster import LABEL_OWNER, Cluster
from ..schemas.triggers import HookAccepted
from ..settings import Settings
from ..storage import Store, now_iso
from ..storage.triggers import KEEP, claim_id
from . import trigger_mapping
from .errors import Conflict, Invalid, Unavailable
from .runs import RunService
from .triggers import TriggerService, spec_of, valid_name
from .workflows import run_manifest

log = logging.getLogger("agentry.api.hooks")
Doc = dict[str, Any]
CACHE_SECONDS = 5.0  # a changed spec or rotated key is seen within this on every replica
REFUSALS_PER_MINUTE = 30  # refused deliveries recorded per trigger and replica (forgeries cost no writes)
STATUS_SECONDS = 2.0  # status.lastDelivery is written at most this often per trigger and replica
EXCERPT = 160
WORKFLOW_RUN_PREFIX = 23  # a WorkflowRun name is at most 40 characters


class Refused(Exception):
    def __init__(self, status: int, refusal: Refusal, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.refusal, self.message, self.retry_after = status, refusal, message, retry_after


@dataclass
class Bucket:
    """A token bucket: `rate` tokens a second up to `burst`."""

    rate: float
    burst: float
    tokens: float
    at: float = field(default_factory=time.monotonic)

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass
class Loaded:
    cr: Doc
    spec: TriggerSpec | None
    key: bytes | None
    why: str  # not ready: why (the Secret, the spec)
    until: float


class HookReceiver:
    def __init__(
        self, store: Store, cluster: Cluster, runs: RunService, triggers: TriggerService, settings: Settings
    ) -> None:
        self.store, self.cluster, self.runs, self.triggers = store, cluster, runs, triggers
        self.settings = settings
        self._cache: dict[str, Loaded] = {}
        self._buckets: dict[str, Bucket] = {}
        self._refusals: dict[str, Bucket] = {}
        self._status_at: dict[str, float] = {}
        self._status_due: set[str] = set()
        self._last: dict[str, Doc] = {}
        self._recorded: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Cancel the background writes (status, pruning) still pending at shutdown."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self, name: str) -> None:
        """Drop a trigger's cached spec and key (after a change through this replica)."""
        self._cache.pop(name, None)

    async def _load(self, name: str) -> Loaded | None:
        now = time.monotonic()
        found = self._cache.get(name)
        if found is not None and found.until > now:
            return found
        cr = await self.cluster.get_object(Trigger, name) if valid_name(name) else None
        if cr is None:
            self._cache.pop(name, None)
            return None
        spec, key, why = spec_of(cr), None, ""
        if spec is None:
            why = "the trigger's spec does not validate"
        else:
            secret = await self.cluster.secret_data(spec.secret_ref.name)
            key = None if secret is None else secret[0].get(spec.secret_ref.key)
            why = (
                "" if key else f"its Secret {spec.secret_ref.name!r} (key {spec.secret_ref.key!r}) is missing"
            )
        if len(self._cache) > 10000:
            self._cache.clear()
        status = cr.get("status") or {}
        if status.get("observedGeneration") != cr["metadata"].get("generation"):
            self._spawn(self._reconcile(cr))  # made with kubectl, or changed: its status catches up
        loaded = Loaded(cr, spec, key, why, now + CACHE_SECONDS)
        self._cache[name] = loaded
        return loaded

    async def deliver(
        self, name: str, headers: Mapping[str, str], chunks: AsyncIterator[bytes]
    ) -> HookAccepted:
        loaded = await self._load(name)
        if loaded is None:
            raise Refused(404, Refusal.NOT_READY, f"no trigger {name!r}")
        record = Record(loaded.cr, headers)
        try:
            return await self._deliver(loaded, headers, chunks, record)
        except Refused as exc:
            record.refused(exc.status, exc.refusal, exc.message)
            await self._record_refusal(record)
            raise
        except (Conflict, Invalid, Unavailable) as exc:
            status = 409 if isinstance(exc, Conflict) else 422 if isinstance(exc, Invalid) else 503
            record.refused(status, Refusal.RUN_REFUSED, str(exc))
            await self._record_refusal(record)
            raise

    async def _deliver(
        self, loaded: Loaded, headers: Mapping[str, str], chunks: AsyncIterator[bytes], record: Record
    ) -> HookAccepted:
        if loaded.spec is None or loaded.key is None:
            raise Refused(409, Refusal.NOT_READY, f"the trigger is not ready: {loaded.why}")
        spec, name = loaded.spec, loaded.cr["metadata"]["name"]
        body = await read_bounded(chunks, headers, min(spec.max_body_bytes, self.settings.max_body_bytes))
        record.body(body)
        if spec.signature.scheme == Scheme.GITHUB:
            refusal, key = verify_github(loaded.key, body, headers)
        else:
            refusal, key = verify_generic(
                loaded.key, body, headers, time.time(), spec.signature.tolerance_seconds
            )
        if refusal is not None:
            raise Refused(401, refusal, UNSIGNED[refusal])
        if spec.suspend:
            raise Refused(409, Refusal.SUSPENDED, "the trigger is suspended (spec.suspend)")
        self._take(name, spec)
        payload = parse_payload(body)
        uid = loaded.cr["metadata"]["uid"]
        kind = spec.target[0]
        run = run_name(name if kind == "Agent" else name[:WORKFLOW_RUN_PREFIX], uid, key)
        correlation = hashlib.sha256(f"webhook:{self.cluster.namespace}/{run}".encode()).hexdigest()[:32]
        claim = claim_id(uid, key)
        record.accepted(claim, run, kind, correlation)
        first = await self.store.claim_trigger_delivery(record.doc)
        if first is not None:
            record.duplicate(first)
            await self.store.record_trigger_delivery(record.doc)
            self._status(name, record.doc)
            return answer(str(first.get("runKind") or kind), str(first.get("run") or run), correlation, True)
        try:
            await self._start(loaded.cr, spec, payload, run)
        except BaseException:
            await self.store.release_trigger_delivery(claim)
            raise
        self._status(name, record.doc)
        self._maybe_prune(uid)
        return answer(kind, run, correlation, False)

    async def _start(self, cr: Doc, spec: TriggerSpec, payload: Any, run: str) -> None:
        """The run, owned by the trigger's owner (a Trigger made with kubectl: the import owner's)."""
        owner = (cr["metadata"].get("labels") or {}).get(LABEL_OWNER) or owner_label(
            self.settings.import_owner
        )
        kind, target = spec.target
        if kind == "Agent":
            await self.runs.run_triggered(
                target, owner, trigger_mapping.run_input(spec.mapping, payload), run
            )
            return
        parameters = trigger_mapping.parameters(spec.mapping, payload)
        bad = [k for k, v in parameters.items() if looks_like_secret(v)]
        if bad:
            raise Invalid(["body"], f"the mapped parameter {bad[0]!r} looks like an API key; not started")
        manifest = run_manifest(self.cluster.namespace, target, parameters, owner)
        manifest["metadata"]["name"] = run
        manifest["metadata"]["labels"][c.LABEL_TRIGGER] = ModelTrigger.WEBHOOK.value  # steps: untrusted input
        try:
            await self.cluster.create_object(WorkflowRun, manifest)
        except Exception as exc:
            code = getattr(getattr(exc, "status", None), "code", None)
            if code == 409:
                return  # a concurrent copy created it
            if code is not None and 400 <= code < 500:
                raise Conflict(f"the cluster refused the workflow run: {exc}") from exc
            raise

    def _take(self, name: str, spec: TriggerSpec) -> None:
        bucket = self._buckets.get(name)
        rate = spec.rate.per_minute / 60.0
        if bucket is None or bucket.rate != rate or bucket.burst != spec.rate.burst:
            bucket = Bucket(rate, spec.rate.burst, spec.rate.burst)
            self._buckets[name] = bucket
        wait = bucket.take(time.monotonic())
        if wait:
            raise Refused(
                429,
                Refusal.RATE_LIMITED,
                f"over the trigger's rate ({spec.rate.per_minute}/min)",
                int(wait) + 1,
            )

    async def _record_refusal(self, record: Record) -> None:
        name = record.doc["trigger"]
        bucket = self._refusals.setdefault(
            name, Bucket(REFUSALS_PER_MINUTE / 60, REFUSALS_PER_MINUTE, REFUSALS_PER_MINUTE)
        )
        if bucket.take(time.monotonic()) == 0:
            try:
                await self.store.record_trigger_delivery(record.doc)
            except Exception as exc:  # bookkeeping: the sender gets its answer regardless
                log.warning("trigger %s: refusal not recorded: %s", name, type(exc).__name__)
            self._status(name, record.doc)

    def _status(self, name: str, doc: Doc) -> None:
        """status.lastDelivery, in the background, at most every STATUS_SECONDS: a delivery within the
        interval is written at its end (the latest one then), so the status ends on the last delivery."""
        self._last[name] = {
            "time": doc["receivedAt"][:19] + "Z",
            "outcome": doc["outcome"],
            "reason": doc["reason"],
            "run": doc["run"],
        }
        if name in self._status_due:
            return  # the scheduled write takes the latest
        self._status_due.add(name)
        wait = STATUS_SECONDS - (time.monotonic() - self._status_at.get(name, -STATUS_SECONDS))
        self._spawn(self._write_status(name, max(0.0, wait)))

    async def _write_status(self, name: str, wait: float) -> None:
        await asyncio.sleep(wait)
        self._status_due.discard(name)
        self._status_at[name] = time.monotonic()
        last = self._last.pop(name, None)
        if last is None:
            return
        try:
            await self.cluster.patch_status(Trigger, name, {"status": {"lastDelivery": last}})
        except Exception as exc:
            log.info("trigger %s: lastDelivery not written: %s", name, type(exc).__name__)

    async def _reconcile(self, cr: Doc) -> None:
        try:
            await self.triggers.reconcile(cr)
        except Exception as exc:
            log.info("trigger %s: status not reconciled: %s", cr["metadata"]["name"], type(exc).__name__)

    def _maybe_prune(self, uid: str) -> None:
        count = self._recorded[uid] = self._recorded.get(uid, 0) + 1
        if count % (KEEP // 10) == 0:
            self._spawn(self._prune(uid))

    async def _prune(self, uid: str) -> None:
        try:
            await self.store.prune_trigger_deliveries(uid)
        except Exception as exc:
            log.info("trigger deliveries of %s not pruned: %s", uid, type(exc).__name__)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


UNSIGNED = {
    Refusal.SIGNATURE_MISSING: "the delivery carries no signature header",
    Refusal.SIGNATURE_INVALID: "the signature does not match the body with the trigger's key",
    Refusal.TIMESTAMP_STALE: "webhook-timestamp is missing or outside the trigger's tolerance",
    Refusal.DELIVERY_ID_MISSING: "webhook-id is missing or longer than 200 characters",
}


def answer(kind: str, run: str, correlation: str, duplicate: bool) -> HookAccepted:
    if kind == "Agent":
        return HookAccepted(execution=run, correlationId=correlation, duplicate=duplicate)
    return HookAccepted(workflowRun=run, correlationId=correlation, duplicate=duplicate)


async def read_bounded(chunks: AsyncIterator[bytes], headers: Mapping[str, str], limit: int) -> bytes:
    """The body, refused (413) as soon as it is known to pass `limit`: by Content-Length, or while read."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, Refusal.TOO_LARGE, f"body larger than {limit} bytes")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise Refused(413, Refusal.TOO_LARGE, f"body larger than {limit} bytes")
    return bytes(body)


def parse_payload(body: bytes) -> Any:
    try:
        return json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise Refused(
            400, Refusal.INVALID_PAYLOAD, "the body is not JSON (send Content-Type: application/json)"
        ) from None


class Record:
    """One delivery's document: what the dashboard shows, never the body."""

    def __init__(self, cr: Doc, headers: Mapping[str, str]) -> None:
        meta = cr["metadata"]
        self.doc: Doc = {
            "id": "",
            "trigger": meta["name"],
            "triggerUid": meta["uid"],
            "receivedAt": now_iso(),
            "outcome": Outcome.REFUSED.value,
            "reason": "",
            "message": "",
            "status": 0,
            "deliveryId": (headers.get(HEADER_ID) or headers.get(HEADER_GITHUB_DELIVERY) or "")[:200],
            "event": (headers.get(HEADER_GITHUB_EVENT) or "")[:100],
            "run": "",
            "runKind": "",
            "correlationId": "",
            "bodyBytes": 0,
            "bodyDigest": "",
            "excerpt": "",
            "expireAt": dt.datetime.now(dt.UTC) + dt.timedelta(days=30),
        }
        self._excerpt = ""

    def body(self, body: bytes) -> None:
        text = body[:EXCERPT].decode("utf-8", "replace")
        self.doc.update(bodyBytes=len(body), bodyDigest=body_digest(body))
        self._excerpt = "" if looks_like_secret(text) else text

    def refused(self, status: int, refusal: Refusal, message: str) -> None:
        self.doc.update(
            outcome=Outcome.REFUSED.value, reason=refusal.value, message=message[:500], status=status
        )

    def accepted(self, claim: str, run: str, kind: str, correlation: str) -> None:
        self.doc.update(
            id=claim,
            outcome=Outcome.ACCEPTED.value,
            status=202,
            run=run,
            runKind=kind,
            correlationId=correlation,
        )
        self.doc["excerpt"] = self._excerpt  # signed: the sender's own words, minus secret-like text

    def duplicate(self, first: Doc) -> None:
        self.doc.update(
            outcome=Outcome.DUPLICATE.value,
            run=first.get("run", self.doc["run"]),
            message=f"a copy of the delivery received at {first.get('receivedAt', '?')}",
        )
