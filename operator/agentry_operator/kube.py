"""The operator's API calls on its client (controller/client.py): create-or-adopt for children,
status and merge patches, reads, deletes and Events, on the hot path (controller/wire.py) where the
client has one."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict, resource_registry
from lightkube.core.resource import NamespacedResource
from lightkube.generic_resource import GenericGlobalResource, GenericNamespacedResource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.batch_v1 import CronJob, Job
from lightkube.resources.core_v1 import ConfigMap, Event, Pod, Secret
from lightkube.types import CascadeType, PatchType

from agentry_common.models import AgentStatus, CRModel, ExecutionStatus
from agentry_common.resources import Agent, Execution, Workflow, WorkflowRun
from agentry_common.workflows import WorkflowRunStatus, WorkflowStatus

from .builders.refusal import classify, describe
from .controller.client import FIELD_MANAGER, Client, new_client

# Objects per page of every listing: kopf's and the informer's (their watches start with one) and the
# restart's resync (handlers/outcome.py). A page's decoded objects all stay until the page is handled.
LIST_CHUNK = 100

__all__ = [
    "Agent",
    "Client",
    "ConfigMap",
    "CronJob",
    "Execution",
    "Job",
    "PatchType",
    "Pod",
    "Refused",
    "Secret",
    "new_client",
]


def changes(current: Mapping[str, object], patch: Mapping[str, object]) -> bool:
    """Whether a merge patch of top-level fields would change `current` (else it is not sent)."""
    return any(current.get(k) != v for k, v in patch.items())


@functools.cache
def raw(api_version: str, kind: str) -> type[GenericNamespacedResource | GenericGlobalResource]:
    """The kind as a plain-dict resource: created and answered without lightkube's typed models.
    Not registered: `from_dict` keeps the typed model."""
    typed = resource_registry.load(api_version, kind)
    namespaced = issubclass(typed, NamespacedResource)
    base = GenericNamespacedResource if namespaced else GenericGlobalResource
    plain: type[GenericNamespacedResource | GenericGlobalResource] = type(
        kind, (base,), {"_api_info": typed._api_info}
    )
    return plain


def namespaced(api_version: str, kind: str) -> type[GenericNamespacedResource]:
    """`raw` for a namespaced kind, typed as one (lists and reads by namespace)."""
    plain = raw(api_version, kind)
    if not issubclass(plain, GenericNamespacedResource):
        raise TypeError(f"{kind} is not namespaced")
    return plain


def to_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class NotOurs(RuntimeError):
    """A child with the expected name exists but belongs to another owner."""


class Refused(ApiError):
    """The API server refused to create a child (any error but 409): which one, and the action
    its error calls for (builders/refusal.py)."""

    def __init__(self, manifest: dict[str, Any], error: ApiError) -> None:
        super().__init__(status=error.status)
        self.kind: str = manifest["kind"]
        self.name: str = manifest["metadata"]["name"]
        self.action = classify(error.status.code, error.status.message or "")

    def describe(self) -> str:
        return describe(self.kind, self.name, self.status.to_dict())


async def create(client: AsyncClient, manifest: dict[str, Any]) -> None:
    """Create an object from a plain dict: on the hot path's connections when the client has them
    (controller/wire.py), else through lightkube. Errors are lightkube's `ApiError` (409: it exists)."""
    res = raw(manifest["apiVersion"], manifest["kind"])
    if not (isinstance(client, Client) and await client.wire.create(res, manifest)):
        await client.create(res.from_dict(manifest))


async def create_or_adopt(client: AsyncClient, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Create a child (None: created, so it has no status to read); on 409 return the existing one if
    it has the same controller owner.

    This is what makes a reconcile idempotent: a handler re-run after a crash computes the same
    deterministic name and finds the child it created the first time.
    """
    try:
        await create(client, manifest)
        return None
    except ApiError as exc:
        if exc.status.code != 409:
            raise Refused(manifest, exc) from exc
    meta = manifest["metadata"]
    res = raw(manifest["apiVersion"], manifest["kind"])
    existing = to_dict(await client.get(res, meta["name"], namespace=meta["namespace"]))
    want = {o["uid"] for o in meta.get("ownerReferences", [])}
    have = {o["uid"] for o in existing["metadata"].get("ownerReferences") or []}
    if want and not want & have:
        raise NotOurs(f"{manifest['kind']} {meta['name']} exists and is owned by someone else")
    return existing


async def get_or_none(
    client: AsyncClient, res: type[NamespacedResource], name: str, namespace: str
) -> dict[str, Any] | None:
    try:
        return to_dict(await client.get(res, name, namespace=namespace))
    except ApiError as exc:
        if exc.status.code == 404:
            return None
        raise


async def delete_quietly(
    client: AsyncClient, res: type[NamespacedResource], name: str, namespace: str
) -> bool:
    """Delete with background propagation (pods follow their Job); False if it was gone."""
    try:
        await client.delete(res, name, namespace=namespace, cascade=CascadeType.BACKGROUND)
    except ApiError as exc:
        if exc.status.code == 404:
            return False
        raise
    return True


# The status model of each kind: the only shape its status is written in.
STATUS_MODELS: dict[type[GenericNamespacedResource], type[CRModel]] = {
    Agent: AgentStatus,
    Execution: ExecutionStatus,
    Workflow: WorkflowStatus,
    WorkflowRun: WorkflowRunStatus,
}


async def patch_status(
    client: AsyncClient,
    res: type[GenericNamespacedResource],
    name: str,
    namespace: str,
    status: CRModel,
    resource_version: str | None = None,
) -> dict[str, Any]:
    """Merge-patch the status of one object with the fields set on `status`, a model of its kind's
    status (STATUS_MODELS): a field the model lacks cannot be written, and one set to None is deleted.
    Returns the patch as sent (camelCase), for the writer's own copy."""
    model = STATUS_MODELS.get(res)
    if model is None or type(status) is not model:
        raise TypeError(f"the status of {res.__name__} is written as {model}, not {type(status).__name__}")
    fields = status.patch()
    body: dict[str, object] = {"status": fields}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}  # optimistic lock
    if not (isinstance(client, Client) and await client.wire.patch_status(res, name, namespace, body)):
        await client.patch(res.Status, name, body, namespace=namespace, patch_type=PatchType.MERGE)
    return fields


async def patch_merge(
    client: AsyncClient, res: type[NamespacedResource], name: str, namespace: str, body: dict[str, object]
) -> None:
    await client.patch(res, name, body, namespace=namespace, patch_type=PatchType.MERGE)


async def apply(client: AsyncClient, manifest: dict[str, Any]) -> dict[str, Any]:
    return to_dict(await client.apply(from_dict(manifest), force=True))


async def post_event(client: AsyncClient, obj: dict[str, Any], reason: str, message: str, kind: str) -> None:
    """An Event (`kind` Normal or Warning) on `obj` (best effort: a refused Event never stops the
    work it reports on)."""
    meta, now = obj["metadata"], dt.datetime.now(dt.UTC)
    event = Event(
        metadata=ObjectMeta(generateName=f"{meta['name'][:200]}.", namespace=meta["namespace"]),
        involvedObject=ObjectReference(
            apiVersion=obj.get("apiVersion"),
            kind=obj.get("kind"),
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid"),
        ),
        reason=reason,
        message=message[:1024],
        type=kind,
        source=EventSource(component=FIELD_MANAGER),
        firstTimestamp=now,
        lastTimestamp=now,
        count=1,
    )
    try:
        await client.create(event)
    except ApiError as exc:
        logging.getLogger("agentry.operator").info(
            "event %s on %s %s refused: %s", reason, obj.get("kind"), meta["name"], exc
        )
