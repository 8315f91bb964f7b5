"""Agents: Firestore definition ↔ Agent CR, and the ownership rule (docs/api.md, "Ownership").

* Created through the API (`source: api`): Firestore is the source of truth. The CR carries the
  owner label (a hash of the user id) and `app.kubernetes.io/managed-by: agentry-api`. A kubectl edit
  of its spec is overwritten with the Firestore definition, a kubectl delete re-creates it.
* Created with kubectl (`source: cluster`): the cluster is the source of truth. The watcher imports it
  as owned by `settings.import_owner`; the API may run and cancel it but not edit or delete it.
* Every CR write goes through `sync`: the Firestore write is kept even when the API server is
  unavailable, with `sync.state: Pending` and a message, and the syncer retries until it lands.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from lightkube import ApiError

from agentry_common.conditions import ConditionType
from agentry_common.models import AgentSpec, looks_like_secret
from agentry_common.policy import (
    AgentPolicy,
    Rule,
    SecretLabels,
    load_policy,
    referenced_secrets,
    violations,
)

from ..auth import User, is_guest_id, owner_label
from ..cluster import (
    ANNOTATION_DISPLAY_NAME,
    LABEL_OWNER,
    MANAGED_BY_API,
    Cluster,
    ClusterUnavailable,
    api_message,
    random_suffix,
)
from ..schemas import AgentIn
from ..settings import Settings
from ..storage import Store, now_iso
from .errors import Conflict, Invalid, NotFound
from .events import EventBus
from .trials.parts import is_trial
from .views import agent_out, agent_status_view

log = logging.getLogger("agentry.api.agents")
Doc = dict[str, Any]


def slug(name: str) -> str:
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return (text or "agent")[:40].rstrip("-") or "agent"


def canonical_spec(spec: Doc) -> Doc:
    """A spec with defaults filled the same way on both sides, for drift comparison."""
    try:
        return AgentSpec.model_validate(spec).wire()
    except ValueError:
        return spec


def paused_by_operator(cr: Doc, doc: Doc) -> bool:
    """The operator paused the schedule (pauseOnFailure): the CR differs from the stored spec only by
    `schedule.suspend: true`, and its SchedulePaused condition is True. The API adopts that pause
    instead of re-applying its own spec over it; the person resumes by unsuspending."""
    live, stored = canonical_spec(cr.get("spec") or {}), canonical_spec(doc.get("spec") or {})
    schedule = dict(stored.get("schedule") or {})
    if not schedule or not (live.get("schedule") or {}).get("suspend") or schedule.get("suspend"):
        return False
    if {**stored, "schedule": {**schedule, "suspend": True}} != live:
        return False
    conditions = (cr.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == ConditionType.SCHEDULE_PAUSED and c.get("status") == "True" for c in conditions
    )


def api_policy(settings: Settings, policy: AgentPolicy) -> AgentPolicy:
    """The Agent policy (AGENTRY_POLICY_FILE) widened by the API's older settings: the model endpoints
    of AGENTRY_ALLOWED_BASE_URLS are allowed too (AGENTRY_ALLOWED_SECRET_NAMES: see check_policy)."""
    extra = [u for u in settings.allowed_base_urls if u not in policy.allowed_base_urls]
    return (
        policy.model_copy(update={"allowed_base_urls": [*policy.allowed_base_urls, *extra]})
        if extra
        else policy
    )


def refused_field(exc: ApiError) -> list[str | int]:
    """The field the API server named in a refusal (e.g. spec.http.allowedHosts), as a 422 loc."""
    details = exc.status.details
    causes = (details.causes if details is not None else None) or []
    for cause in causes:
        if cause.field and cause.field.startswith("spec"):
            return ["body", *cause.field.split(".")]
    return ["body", "spec"]


class AgentService:
    def __init__(
        self,
        store: Store,
        cluster: Cluster,
        bus: EventBus,
        settings: Settings,
        policy: AgentPolicy | None = None,
    ) -> None:
        self.store, self.cluster, self.bus, self.settings = store, cluster, bus, settings
        self.policy = api_policy(settings, policy or load_policy())
        self.kick = asyncio.Event()

    # -- policy -----------------------------------------------------------------------------

    def check_policy(self, spec: AgentSpec, secret_labels: SecretLabels | None = None) -> None:
        """What a dashboard user may put in a spec beyond the CRD schema: the Agent policy
        (agentry_common.policy, the same one the operator's webhook applies to kubectl), plus two
        rules of the API's own (no key-shaped text; no Secret Manager references).

        `secret_labels`: the labels of the Secrets spec.secrets names (`enforce_policy` reads them);
        None means unknown, so only the names of AGENTRY_ALLOWED_SECRET_NAMES pass the opt-in rule.
        Every violation is reported in one 422, each naming its field and rule.
        """
        found: list[tuple[list[str | int], str]] = []
        for field in ("instructions", "description"):
            if looks_like_secret(getattr(spec, field)):
                found.append(
                    (
                        ["body", "spec", field],
                        f"spec.{field} contains what looks like an API key; reference it through "
                        "spec.secrets",
                    )
                )
        for i, secret in enumerate(spec.secrets):
            if secret.secret_manager is not None:
                found.append(
                    (
                        ["body", "spec", "secrets", i, "secretManager"],
                        "Secret Manager references can only be set with kubectl by an administrator",
                    )
                )
        labels: dict[str, dict[str, str] | None] = {
            k: dict(v) if v is not None else None for k, v in (secret_labels or {}).items()
        }
        opt_in = self.policy.secrets.opt_in_label
        for name in self.settings.allowed_secret_names:  # compatibility: opted in by name
            labels[name] = {**(labels.get(name) or {}), opt_in: "true"}
        # With the gateway (the chart sets its URL exactly then), runs keep checkpoints and may run longer.
        checkpointed = self.settings.gateway_url is not None
        for violation in violations(spec, self.policy, labels, checkpointed=checkpointed):
            message = str(violation)
            if violation.rule == Rule.SECRET_NOT_REFERABLE:
                named = ", ".join(self.settings.allowed_secret_names) or "none"
                message += f"; allowed: {named} by name, and Secrets labelled {opt_in}=true"
            found.append((["body", *violation.path], message))
        if found:
            (loc, msg), *more = found
            raise Invalid(loc, msg, more)

    async def enforce_policy(self, spec: AgentSpec) -> None:
        """check_policy with the labels of the referenced Secrets read from the cluster (fails closed:
        an unavailable cluster is a 503, nothing is stored)."""
        names = referenced_secrets(spec)
        self.check_policy(spec, await self.cluster.secret_labels(names) if names else {})

    # -- API operations -----------------------------------------------------------------------

    async def list(self, user: User) -> list[Doc]:
        return await self.store.list_agents(user.id)

    async def get(self, user: User, agent_id: str) -> Doc:
        doc = await self.store.owned_agent(user.id, agent_id)
        if doc is None:
            raise NotFound(f"agent {agent_id!r} not found")
        return doc

    async def dry_run(self, manifest: Doc) -> None:
        """Let the API server validate (CEL rules, webhook) before anything is stored."""
        try:
            await self.cluster.apply_agent(manifest, dry_run=True)
        except ClusterUnavailable as exc:  # stored as Pending and validated when the cluster is back
            log.warning("the cluster could not check the agent (%s); it is stored unchecked", exc)
        except ApiError as exc:
            raise Invalid(refused_field(exc), f"the cluster refused the agent: {api_message(exc)}") from exc

    def _manifest(self, doc: Doc) -> Doc:
        user_id = doc["userId"]
        return self.cluster.agent_manifest(
            doc["id"], doc["spec"], owner_label(user_id), doc["name"], guest=is_guest_id(user_id)
        )

    async def create(self, user: User, body: AgentIn) -> Doc:
        await self.enforce_policy(body.spec)
        now = now_iso()
        doc: Doc = {
            "id": f"{slug(body.name)}-{random_suffix()}",
            "userId": user.id,
            "source": "api",
            "name": body.name,
            "spec": body.spec.wire(),
            "status": {},
            "sync": {
                "state": "Pending",
                "message": "being applied to the cluster",
                "attempts": 0,
                "updatedAt": now,
            },
            "createdAt": now,
            "updatedAt": now,
            "deleted": False,
        }
        await self.dry_run(self._manifest(doc))
        await self.store.create_agent(doc)
        doc = await self.sync(doc)
        await self.bus.publish(user.id, "agent", {"action": "created", "agent": agent_out(doc).model_dump()})
        return doc

    async def update(self, user: User, agent_id: str, body: AgentIn) -> Doc:
        doc = await self.get(user, agent_id)
        if doc.get("source") != "api":
            raise Conflict(
                f"agent {agent_id!r} was created with kubectl and is managed in the cluster; edit it there"
            )
        await self.enforce_policy(body.spec)
        now = now_iso()
        doc.update(
            name=body.name,
            spec=body.spec.wire(),
            updatedAt=now,
            sync={
                "state": "Pending",
                "message": "being applied to the cluster",
                "attempts": 0,
                "updatedAt": now,
            },
        )
        await self.dry_run(self._manifest(doc))
        await self.store.put_agent(doc)
        doc = await self.sync(doc)
        await self.bus.publish(user.id, "agent", {"action": "updated", "agent": agent_out(doc).model_dump()})
        return doc

    async def delete(self, user: User, agent_id: str) -> None:
        doc = await self.get(user, agent_id)
        if doc.get("source") != "api":
            raise Conflict(
                f"agent {agent_id!r} was created with kubectl and is managed in the cluster; delete it there"
            )
        now = now_iso()
        doc.update(
            deleted=True,
            updatedAt=now,
            sync={
                "state": "Pending",
                "message": "being deleted from the cluster",
                "attempts": 0,
                "updatedAt": now,
            },
        )
        await self.store.put_agent(doc)
        await self.sync(doc)
        await self.bus.publish(user.id, "agent", {"action": "deleted", "agent": {"id": agent_id}})

    # -- the CR side ----------------------------------------------------------------------------

    async def sync(self, doc: Doc) -> Doc:
        """Make the cluster match Firestore for an API-owned agent; record the outcome in `sync`."""
        attempts = int((doc.get("sync") or {}).get("attempts", 0)) + 1
        try:
            if doc.get("deleted"):
                await self.cluster.delete_agent(doc["id"])
                await self.store.remove_agent(doc["id"])
                return doc
            await self.cluster.apply_agent(self._manifest(doc))
            current = await self.store.agent(doc["id"])
            if current is None or current.get("deleted"):
                # Deleted while this write was on its way (the syncer's retry racing a delete): the
                # apply may have re-created what the delete removed, so remove it again.
                await self.cluster.delete_agent(doc["id"])
                return current or doc
            sync = {"state": "Synced", "message": "", "attempts": attempts, "updatedAt": now_iso()}
        except ClusterUnavailable as exc:
            sync = {
                "state": "Pending",
                "message": f"the cluster is unavailable ({exc}); retrying every "
                f"{self.settings.sync_retry_seconds:g} s",
                "attempts": attempts,
                "updatedAt": now_iso(),
            }
        except ApiError as exc:
            sync = {
                "state": "Error",
                "message": f"the cluster refused the agent: {api_message(exc)}",
                "attempts": attempts,
                "updatedAt": now_iso(),
            }
        doc["sync"] = sync
        await self.store.update_agent(doc["id"], {"sync": sync})
        if sync["state"] != "Synced":
            log.warning("agent %s not synced: %s", doc["id"], sync["message"])
        return doc

    async def retry_pending(self) -> int:
        """One pass of the syncer: retry every Pending write. Returns how many are still pending."""
        pending = 0
        for doc in await self.store.agents_pending_sync():
            if doc.get("source") != "api":
                continue
            before = doc.get("sync", {}).get("state")
            doc = await self.sync(doc)
            if doc.get("deleted") and doc.get("sync", {}).get("state") != "Pending":
                continue
            if doc["sync"]["state"] == "Pending":
                pending += 1
            elif before != doc["sync"]["state"]:
                await self.bus.publish(
                    doc["userId"], "agent", {"action": "synced", "agent": agent_out(doc).model_dump()}
                )
        return pending

    async def observe(self, event: str, cr: Doc) -> Doc | None:
        """The watcher saw an Agent CR change. Returns the (possibly new) Firestore document."""
        meta = cr["metadata"]
        name = meta["name"]
        if is_trial(cr):  # a chat trial's hidden Agent (services/trials/run.py): never the user's
            return None
        doc = await self.store.agent(name)
        if event == "DELETED":
            if doc is None:
                return None
            if doc.get("source") == "api" and not doc.get("deleted"):
                log.info("agent %s was deleted in the cluster; Firestore owns it: re-creating", name)
                now = now_iso()
                sync = {
                    "state": "Pending",
                    "message": "the Agent was deleted in the cluster; re-creating it from its definition",
                    "attempts": 0,
                    "updatedAt": now,
                }
                await self.store.update_agent(name, {"sync": sync})
                doc["sync"] = sync
                self.kick.set()
            elif doc.get("source") == "cluster":
                await self.store.remove_agent(name)
                await self.bus.publish(doc["userId"], "agent", {"action": "deleted", "agent": {"id": name}})
            return doc
        if doc is None:
            return await self.import_cr(cr)
        if doc.get("deleted"):
            return doc
        status = agent_status_view(cr)
        changes: Doc = {}
        if doc.get("source") == "cluster":
            if doc.get("spec") != cr.get("spec"):
                changes["spec"] = cr.get("spec") or {}
        elif paused_by_operator(cr, doc):
            log.info("agent %s: the operator paused its schedule (pauseOnFailure); adopted", name)
            changes["spec"] = cr.get("spec") or {}
        elif canonical_spec(cr.get("spec") or {}) != canonical_spec(doc.get("spec") or {}) and (
            (doc.get("sync") or {}).get("state") == "Synced"
        ):
            log.info("agent %s was changed in the cluster; Firestore owns it: re-applying", name)
            await self.sync(doc)
        if doc.get("status") != status:
            changes["status"] = status
        if changes:
            changes["updatedAt"] = now_iso()
            await self.store.update_agent(name, changes)
            doc.update(changes)
            await self.bus.publish(
                doc["userId"],
                "agent",
                {"action": "status", "agent": agent_out(doc).model_dump()},
                dedupe_key=f"agent:{meta.get('uid')}:{meta.get('resourceVersion')}",
            )
        return doc

    async def import_cr(self, cr: Doc) -> Doc | None:
        """An Agent CR unknown to Firestore: created with kubectl (or its document was lost); never
        a chat trial's hidden Agent (None)."""
        if is_trial(cr):
            return None
        meta = cr["metadata"]
        labels = meta.get("labels") or {}
        now = now_iso()
        doc: Doc = {
            "id": meta["name"],
            "userId": self.settings.import_owner,
            "source": "cluster",
            "name": (meta.get("annotations") or {}).get(ANNOTATION_DISPLAY_NAME) or meta["name"],
            "spec": cr.get("spec") or {},
            "status": agent_status_view(cr),
            "sync": {"state": "Synced", "message": "managed in the cluster", "attempts": 0, "updatedAt": now},
            "createdAt": now,
            "updatedAt": now,
            "deleted": False,
        }
        if labels.get(LABEL_OWNER) and labels.get("app.kubernetes.io/managed-by") == MANAGED_BY_API:
            doc["sync"]["message"] = "created by the API but its Firestore document was lost; imported"
        await self.store.ensure_user(self.settings.import_owner, "admin")
        await self.store.put_agent(doc)
        await self.bus.publish(
            doc["userId"],
            "agent",
            {"action": "imported", "agent": agent_out(doc).model_dump()},
            dedupe_key=f"agent:{meta.get('uid')}:imported",
        )
        log.info("imported agent %s from the cluster as owned by %s", meta["name"], doc["userId"])
        return doc
