"""Triggers for their owners: create (with a Secret holding a random HMAC key, shown once), read,
change, delete, rotate the key, the deliveries; and the trigger's status (url, Ready, lastDelivery).

A Trigger is its owner's by its `agentry.dev/owner` label, as a Workflow is (one without the label
was made with kubectl and is the import owner's). The API writes the status: it serves the URL and
receives the deliveries, and it reads what Ready depends on (the Secret, the target).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import re
import secrets
from typing import Any

from lightkube import ApiError
from lightkube.resources.core_v1 import Secret
from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common.conditions import ConditionType
from agentry_common.resources import Agent, Trigger, Workflow
from agentry_common.triggers import (
    DEFAULT_SECRET_KEY,
    TRIGGER_KIND,
    ReadyReason,
    TriggerSpec,
    hook_path,
)

from ..auth import User, owner_label
from ..cluster import LABEL_OWNER, MANAGED_BY_API, Cluster, api_message
from ..schemas.triggers import (
    TRIGGER_NAME,
    DeliveryOut,
    LastDeliveryOut,
    TriggerCreated,
    TriggerIn,
    TriggerOut,
    TriggerPatch,
)
from ..settings import Settings
from ..storage import Store
from .agents import AgentService
from .errors import Conflict, Invalid, NotFound
from .trigger_mapping import check_mapping
from .workflows import owned_by

log = logging.getLogger("agentry.api.triggers")
Doc = dict[str, Any]
LABEL_TRIGGER_KEY = f"{c.GROUP}/trigger-key"  # on the Secrets the API made: only those it rotates
TRIGGER_SWEEP_SECONDS = 30.0


def new_key() -> str:
    return secrets.token_urlsafe(32)


def valid_name(name: str) -> bool:
    """A name a Trigger can have; any other is no trigger's (404), never a question for the cluster."""
    return re.fullmatch(TRIGGER_NAME, name) is not None


def spec_of(cr: Doc) -> TriggerSpec | None:
    try:
        return TriggerSpec.model_validate(cr.get("spec") or {})
    except ValidationError:
        return None


def condition(status: str, reason: ReadyReason, message: str, generation: int, old: Doc | None) -> Doc:
    """The Ready condition; lastTransitionTime moves only when the status changes."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    since = (old or {}).get("lastTransitionTime") if (old or {}).get("status") == status else None
    return {
        "type": ConditionType.READY.value,
        "status": status,
        "reason": reason.value,
        "message": message,
        "lastTransitionTime": since or now,
        "observedGeneration": generation,
    }


def ready_of(cr: Doc) -> Doc:
    found = [
        x for x in (cr.get("status") or {}).get("conditions") or [] if x.get("type") == ConditionType.READY
    ]
    return found[0] if found else {"status": "Unknown", "reason": "", "message": "not checked yet"}


class TriggerService:
    def __init__(self, store: Store, cluster: Cluster, agents: AgentService, settings: Settings) -> None:
        self.store, self.cluster, self.agents, self.settings = store, cluster, agents, settings

    def url(self, name: str, base: str) -> str:
        return (self.settings.public_url or base).rstrip("/") + hook_path(name)

    def out(self, cr: Doc, base: str, key: str | None = None) -> TriggerCreated:
        spec = spec_of(cr) or TriggerSpec.model_validate(
            {"agentRef": {"name": "?"}, "secretRef": {"name": "?"}}
        )
        status, ready = cr.get("status") or {}, ready_of(cr)
        last = status.get("lastDelivery")
        return TriggerCreated(
            name=cr["metadata"]["name"],
            agent=spec.agent_ref.name if spec.agent_ref else None,
            workflow=spec.workflow_ref.name if spec.workflow_ref else None,
            url=self.url(cr["metadata"]["name"], base),
            path=hook_path(cr["metadata"]["name"]),
            scheme=spec.signature.scheme,
            toleranceSeconds=spec.signature.tolerance_seconds,
            maxBodyBytes=spec.max_body_bytes,
            rate=spec.rate,
            mapping=spec.mapping,
            suspend=spec.suspend,
            secretName=spec.secret_ref.name,
            ready=ready.get("status", "Unknown"),
            reason=ready.get("reason", ""),
            message=ready.get("message", ""),
            lastDelivery=LastDeliveryOut.model_validate(last) if isinstance(last, dict) else None,
            createdAt=cr["metadata"].get("creationTimestamp"),
            secret=key,
        )

    def mine(self, cr: Doc | None, user: User) -> bool:
        return owned_by(cr, user, self.settings.import_owner)

    async def owned(self, user: User) -> list[Doc]:
        if user.id == self.settings.import_owner:
            items = [cr for cr in await self.cluster.list_objects(Trigger, {}) if self.mine(cr, user)]
        else:
            items = await self.cluster.list_objects(Trigger, {LABEL_OWNER: owner_label(user.id)})
        return sorted(items, key=lambda cr: str(cr["metadata"]["name"]))

    async def get(self, user: User, name: str) -> Doc:
        cr = await self.cluster.get_object(Trigger, name) if valid_name(name) else None
        if cr is None or not self.mine(cr, user):
            raise NotFound(f"trigger {name!r} not found")
        return cr

    async def _check_target(self, user: User, body: TriggerIn) -> None:
        if body.agent is not None:
            try:
                await self.agents.get(user, body.agent)
            except NotFound:
                raise Invalid(["body", "agent"], f"no agent {body.agent!r} of yours") from None
        else:
            assert body.workflow is not None
            if not owned_by(
                await self.cluster.get_object(Workflow, body.workflow), user, self.settings.import_owner
            ):
                raise Invalid(["body", "workflow"], f"no workflow {body.workflow!r} of yours")

    async def create(self, user: User, body: TriggerIn, base: str) -> TriggerCreated:
        await self._check_target(user, body)
        spec = apply_fields(
            {"secretRef": {"name": f"{body.name}-trigger-key", "key": DEFAULT_SECRET_KEY}}, body
        )
        spec["agentRef" if body.agent else "workflowRef"] = {"name": body.agent or body.workflow}
        checked = validated(spec)
        manifest = {
            "apiVersion": c.API_VERSION,
            "kind": TRIGGER_KIND,
            "metadata": {
                "name": body.name,
                "namespace": self.cluster.namespace,
                "labels": {LABEL_OWNER: user.owner_label, c.LABEL_MANAGED_BY: MANAGED_BY_API},
            },
            "spec": checked.wire(),
        }
        try:
            cr = await self.cluster.create_object(Trigger, manifest)
        except ApiError as exc:
            if exc.status.code == 409:
                raise Conflict(f"a trigger named {body.name!r} exists already") from exc
            raise Invalid(["body"], f"the cluster refused the trigger: {api_message(exc)}") from exc
        key = new_key()
        try:
            await self.cluster.put_secret(key_secret(cr, checked.secret_ref.name, key))
        except Exception:
            await self.cluster.delete_object(Trigger, body.name)
            raise
        cr = await self.reconcile(cr)
        log.info("trigger %s created for %s", body.name, user.id)
        return self.out(cr, base, key)

    async def update(self, user: User, name: str, body: TriggerPatch, base: str) -> TriggerOut:
        cr = await self.get(user, name)
        spec = apply_fields(dict(cr.get("spec") or {}), body)
        checked = validated(spec)
        cr = await self.cluster.merge_patch_object(Trigger, name, {"spec": checked.wire()})
        return self.out(await self.reconcile(cr), base)

    async def delete(self, user: User, name: str) -> None:
        await self.get(user, name)
        await self.cluster.delete_object(Trigger, name)  # its key's Secret goes with it (ownerReference)

    async def rotate(self, user: User, name: str, base: str) -> TriggerCreated:
        cr = await self.get(user, name)
        spec = spec_of(cr)
        if spec is None:
            raise Conflict(f"trigger {name!r} has an invalid spec; fix it first")
        found = await self.cluster.secret_data(spec.secret_ref.name)
        if found is not None and found[1].get(LABEL_TRIGGER_KEY) != name:
            raise Conflict(
                f"Secret {spec.secret_ref.name!r} was not made by Agentry for this trigger; "
                "rotate it in the cluster"
            )
        key = new_key()
        manifest = key_secret(cr, spec.secret_ref.name, key, spec.secret_ref.key)
        if found is None:
            await self.cluster.put_secret(manifest)
        else:
            await self.cluster.merge_patch_object(Secret, spec.secret_ref.name, {"data": manifest["data"]})
        log.info("trigger %s: key rotated by %s", name, user.id)
        return self.out(await self.reconcile(cr), base, key)

    async def deliveries(self, user: User, name: str, limit: int) -> list[DeliveryOut]:
        cr = await self.get(user, name)
        docs = await self.store.trigger_deliveries(cr["metadata"]["uid"], limit)
        return [DeliveryOut.model_validate(d) for d in docs]

    # -- status ----------------------------------------------------------------------------------

    async def readiness(self, cr: Doc) -> tuple[str, ReadyReason, str]:
        spec = spec_of(cr)
        if spec is None:
            return "False", ReadyReason.INVALID_MAPPING, "the spec does not validate"
        problems = check_mapping(spec.mapping)
        if problems:
            return (
                "False",
                ReadyReason.INVALID_MAPPING,
                "; ".join(f"spec.mapping.{f}: {m}" for f, m in problems),
            )
        found = await self.cluster.secret_data(spec.secret_ref.name)
        if found is None or spec.secret_ref.key not in found[0]:
            what = "does not exist" if found is None else f"has no key {spec.secret_ref.key!r}"
            return "False", ReadyReason.SECRET_MISSING, f"Secret {spec.secret_ref.name!r} {what}"
        kind, target = spec.target
        if await self.cluster.get_object(Agent if kind == "Agent" else Workflow, target) is None:
            return "False", ReadyReason.TARGET_MISSING, f"{kind} {target!r} does not exist"
        if spec.suspend:
            return "False", ReadyReason.SUSPENDED, "spec.suspend: deliveries are refused"
        return "True", ReadyReason.READY, "deliveries start runs"

    async def sweep(self) -> None:
        """Every Trigger's status (those made with kubectl too): a Secret or target that appeared or
        went away since shows in Ready within TRIGGER_SWEEP_SECONDS."""
        for cr in await self.cluster.list_objects(Trigger, {}):
            await self.reconcile(cr)

    async def reconcile(self, cr: Doc) -> Doc:
        """Write status.url and the Ready condition when they changed; returns the CR as it stands."""
        status, reason, message = await self.readiness(cr)
        generation = int(cr["metadata"].get("generation") or 0)
        old = ready_of(cr)
        want = condition(status, reason, message, generation, old if "type" in old else None)
        current = cr.get("status") or {}
        path = hook_path(cr["metadata"]["name"])
        if current.get("url") == path and {**old, "lastTransitionTime": ""} == {
            **want,
            "lastTransitionTime": "",
        }:
            return cr
        patch = {"status": {"url": path, "conditions": [want], "observedGeneration": generation}}
        try:
            return await self.cluster.patch_status(Trigger, cr["metadata"]["name"], patch)
        except ApiError as exc:
            log.warning("trigger %s: status not written: %s", cr["metadata"]["name"], api_message(exc))
            return cr


def apply_fields(spec: Doc, body: TriggerIn | TriggerPatch) -> Doc:
    """The CR spec with the owner's fields set (camelCase, as in the CRD)."""
    signature = dict(spec.get("signature") or {})
    if body.scheme is not None:
        signature["scheme"] = body.scheme.value
    if body.toleranceSeconds is not None:
        signature["toleranceSeconds"] = body.toleranceSeconds
    if signature:
        spec["signature"] = signature
    if body.maxBodyBytes is not None:
        spec["maxBodyBytes"] = body.maxBodyBytes
    if body.rate is not None:
        spec["rate"] = body.rate.wire()
    if body.mapping is not None:
        spec["mapping"] = body.mapping.wire()
    if body.suspend is not None:
        spec["suspend"] = body.suspend
    return spec


def validated(spec: Doc) -> TriggerSpec:
    """The spec as a model; a bad mapping or a parameter mapping without a Workflow is a 422."""
    try:
        checked = TriggerSpec.model_validate(spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise Invalid(["body", *[str(p) for p in first["loc"]]], first["msg"]) from None
    problems = check_mapping(checked.mapping)
    if checked.mapping.parameters and checked.workflow_ref is None:
        problems.append(("parameters", "parameters apply to a Workflow target only"))
    if problems:
        (field, msg), *more = problems
        raise Invalid(
            ["body", "mapping", *field.split(".", 1)], msg, [(["body", "mapping", f], m) for f, m in more]
        )
    return checked


def key_secret(cr: Doc, name: str, key: str, data_key: str = DEFAULT_SECRET_KEY) -> Doc:
    """The Secret holding a trigger's HMAC key, owned by the Trigger (deleted with it)."""
    meta = cr["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {LABEL_TRIGGER_KEY: meta["name"], c.LABEL_MANAGED_BY: MANAGED_BY_API},
            "ownerReferences": [
                {"apiVersion": c.API_VERSION, "kind": TRIGGER_KIND, "name": meta["name"], "uid": meta["uid"]}
            ],
        },
        "type": "Opaque",
        "data": {data_key: base64.b64encode(key.encode()).decode()},
    }
