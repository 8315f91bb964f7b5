"""The API's Kubernetes access: one lightkube AsyncClient, field manager `agentry-api`.

The API does not import the operator (import boundary): both name the resource classes of
`agentry_common.resources`.
Transport failures and 5xx answers become `ClusterUnavailable` (HTTP 503 with Retry-After); 4xx
answers stay `ApiError` for the caller to translate.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import string
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig, operators
from lightkube.resources.core_v1 import Pod, Secret
from lightkube.types import PatchType

from agentry_common import constants as c
from agentry_common.models import Trigger
from agentry_common.pool import LABEL_POOL, IdleCost, idle_cost
from agentry_common.resources import Agent, Execution

FIELD_MANAGER = "agentry-api"
LABEL_OWNER = f"{c.GROUP}/owner"
ANNOTATION_DISPLAY_NAME = f"{c.GROUP}/display-name"
ANNOTATION_SOURCE = f"{c.GROUP}/source"
MANAGED_BY_API = "agentry-api"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
DRY_RUN_RETRY_SECONDS = 3.0
DRY_RUN_FIRST_PAUSE = 0.25  # doubled after each try
log = logging.getLogger(__name__)
# The same classes the operator registers (lightkube returns the registered one for an equal kind).


class ClusterUnavailable(Exception):
    """The API server could not be reached or answered 5xx; the write may be retried."""


def random_suffix(length: int = 5) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def to_dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiError):
        return exc.status.code is not None and (exc.status.code >= 500 or exc.status.code == 429)
    return isinstance(exc, httpx2.TransportError | asyncio.TimeoutError | OSError)


def api_message(exc: ApiError) -> str:
    return str(exc.status.message or exc.status.reason or "the API server refused the request")


class Cluster:
    def __init__(self, namespace: str, kubeconfig: str | None = None, timeout: float = 10.0) -> None:
        self.namespace = namespace
        config = KubeConfig.from_file(kubeconfig) if kubeconfig else None
        self.client = AsyncClient(
            config,
            namespace=namespace,
            field_manager=FIELD_MANAGER,
            timeout=httpx2.Timeout(timeout),
        )

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except ApiError as exc:
            if is_transient(exc):
                raise ClusterUnavailable(api_message(exc)) from exc
            raise
        except (TimeoutError, httpx2.TransportError, OSError) as exc:
            raise ClusterUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def ping(self) -> None:
        async def first() -> None:
            async for _ in self.client.list(Agent, namespace=self.namespace, chunk_size=1):
                break

        await self._call(first())

    # -- agents ---------------------------------------------------------------------------------

    def agent_manifest(
        self, name: str, spec: dict[str, Any], owner: str, display_name: str, guest: bool = False
    ) -> dict[str, Any]:
        labels = {LABEL_OWNER: owner, c.LABEL_MANAGED_BY: MANAGED_BY_API}
        if guest:  # the run gate applies the guests' quotas to the Agent's runs
            labels[c.LABEL_OWNER_KIND] = c.OWNER_KIND_GUEST
        return {
            "apiVersion": c.API_VERSION,
            "kind": c.AGENT_KIND,
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": {ANNOTATION_DISPLAY_NAME: display_name[:253], ANNOTATION_SOURCE: "api"},
            },
            "spec": spec,
        }

    async def apply_agent(self, manifest: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        obj = Agent.from_dict(manifest)
        if dry_run:
            return to_dict(await self._dry_run(lambda: self.client.apply(obj, force=True, dry_run=True)))
        return to_dict(await self._call(self.client.apply(obj, force=True)))

    async def _dry_run(self, request: Callable[[], Awaitable[Any]]) -> Any:
        """A dry run answers the person now, so a transient failure (429, 5xx, a dropped connection)
        is tried again for up to DRY_RUN_RETRY_SECONDS before the caller stores the write unchecked."""
        deadline = time.monotonic() + DRY_RUN_RETRY_SECONDS
        pause = DRY_RUN_FIRST_PAUSE
        while True:
            try:
                return await self._call(request())
            except ClusterUnavailable as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.info("dry run not conclusive (%s); trying again", exc)
                await asyncio.sleep(pause)
                pause *= 2

    async def get_agent(self, name: str) -> dict[str, Any] | None:
        try:
            return to_dict(await self._call(self.client.get(Agent, name, namespace=self.namespace)))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def delete_agent(self, name: str) -> bool:
        try:
            await self._call(self.client.delete(Agent, name, namespace=self.namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise
        return True

    # -- workflows ------------------------------------------------------------------------------

    async def replace_object(
        self, res: Any, manifest: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """PUT (the manifest carries the resourceVersion read: a concurrent edit is a 409)."""
        obj = res.from_dict(manifest)
        return to_dict(await self._call(self.client.replace(obj, dry_run=dry_run)))

    async def merge_patch_object(
        self, res: Any, name: str, patch: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """A JSON merge patch: changes only the fields given, whatever the operator wrote meanwhile."""
        call = self.client.patch(
            res, name, patch, namespace=self.namespace, patch_type=PatchType.MERGE, dry_run=dry_run
        )
        return to_dict(await self._call(call))

    async def create_object(
        self, res: Any, manifest: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        obj = res.from_dict(manifest)
        return to_dict(await self._call(self.client.create(obj, dry_run=dry_run)))

    async def get_object(self, res: Any, name: str) -> dict[str, Any] | None:
        try:
            return to_dict(await self._call(self.client.get(res, name, namespace=self.namespace)))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def list_objects(
        self, res: Any, labels: dict[str, Any], fields: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """`fields`: a field selector (custom resources: only their CRD's `selectableFields`)."""
        listing = self.client.list(res, namespace=self.namespace, labels=labels, fields=fields)
        return [to_dict(o) for o in await self._call(_collect(listing))]

    async def pool_idle_cost(self) -> IdleCost:
        """The warm pools' pods waiting for a claim here, and their memory requests (docs/runs.md)."""
        return idle_cost(await self.list_objects(Pod, {LABEL_POOL: operators.exists()}))

    async def delete_object(self, res: Any, name: str) -> bool:
        try:
            await self._call(self.client.delete(res, name, namespace=self.namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return False
            raise
        return True

    async def patch_status(self, res: Any, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the object's status subresource."""
        call = self.client.patch(
            res.Status, name, patch, namespace=self.namespace, patch_type=PatchType.MERGE
        )
        return to_dict(await self._call(call))

    # -- secrets --------------------------------------------------------------------------------

    async def secret_labels(self, names: list[str]) -> dict[str, dict[str, str] | None]:
        """The labels of each named Secret of the namespace (None: no such Secret), for the Agent
        policy's opt-in rule. Only metadata is kept; the values are never looked at.

        A 403 (the chart's Role grants `get` on secrets in the workload namespace) is reported as the
        cluster being unavailable: the policy cannot be checked, so nothing is stored.
        """
        found: dict[str, dict[str, str] | None] = {}
        for name in names:
            try:
                secret = await self._call(self.client.get(Secret, name, namespace=self.namespace))
            except ApiError as exc:
                if exc.status.code == 404:
                    found[name] = None
                    continue
                if exc.status.code == 403:
                    raise ClusterUnavailable(
                        f"the API may not read Secret {name!r} to check the agent policy: {api_message(exc)}"
                    ) from exc
                raise
            found[name] = dict((secret.metadata.labels if secret.metadata else None) or {})
        return found

    async def secret_data(self, name: str) -> tuple[dict[str, bytes], dict[str, str]] | None:
        """A Secret's decoded data and its labels (None: no such Secret). Only a trigger's HMAC key is
        read this way (services/hooks.py); the value is never logged or stored."""
        try:
            secret = await self._call(self.client.get(Secret, name, namespace=self.namespace))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return data, dict((secret.metadata.labels if secret.metadata else None) or {})

    async def put_secret(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a Secret the API manages (a trigger's key)."""
        return to_dict(await self._call(self.client.create(Secret.from_dict(manifest))))

    # -- executions -----------------------------------------------------------------------------

    async def create_execution(
        self,
        name: str,
        agent: str,
        input_text: str | None,
        correlation_id: str,
        owner: str,
        *,
        trigger: Trigger = Trigger.API,
        scheduled_time: str | None = None,
        annotations: dict[str, str] | None = None,
        parent: str | None = None,
    ) -> dict[str, Any]:
        """`annotations`: extra ones (the run's trace context, agentry_common.tracing); `parent`: the
        run a follow-up continues (spec.parentRef)."""
        spec: dict[str, Any] = {
            "agentRef": {"name": agent},
            "trigger": trigger,
            "correlationId": correlation_id,
        }
        if input_text:
            spec["input"] = input_text
        if parent:
            spec["parentRef"] = {"name": parent}
        if scheduled_time:
            spec["scheduledTime"] = scheduled_time
        manifest = {
            "apiVersion": c.API_VERSION,
            "kind": c.EXECUTION_KIND,
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {LABEL_OWNER: owner, c.LABEL_AGENT: agent[:63], c.LABEL_TRIGGER: trigger},
                "annotations": {**(annotations or {}), c.ANNOTATION_CORRELATION_ID: correlation_id},
            },
            "spec": spec,
        }
        return to_dict(await self._call(self.client.create(Execution.from_dict(manifest))))

    async def get_execution(self, name: str) -> dict[str, Any] | None:
        try:
            return to_dict(await self._call(self.client.get(Execution, name, namespace=self.namespace)))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise

    async def cancel_execution(self, name: str) -> None:
        await self._call(
            self.client.patch(
                Execution,
                name,
                {"spec": {"cancel": True}},
                namespace=self.namespace,
                patch_type=PatchType.MERGE,
            )
        )

    async def append_approval(self, name: str, decision: dict[str, Any], attempts: int = 5) -> bool:
        """Append a decision to spec.approvals (JSON patch guarded by resourceVersion).

        False if the Execution is gone. A decision with the same id already present is not repeated.
        """
        for _ in range(attempts):
            current = await self.get_execution(name)
            if current is None:
                return False
            approvals = (current.get("spec") or {}).get("approvals")
            if any(a.get("id") == decision["id"] for a in approvals or []):
                return True
            rv = current["metadata"]["resourceVersion"]
            ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}]
            if approvals is None:
                ops.append({"op": "add", "path": "/spec/approvals", "value": [decision]})
            else:
                ops.append({"op": "add", "path": "/spec/approvals/-", "value": decision})
            try:
                await self._call(
                    self.client.patch(
                        Execution, name, ops, namespace=self.namespace, patch_type=PatchType.JSON
                    )
                )
                return True
            except ApiError as exc:
                if exc.status.code in (409, 422):  # the test op failed: someone wrote in between
                    continue
                raise
        raise ClusterUnavailable(f"could not record the decision on {name}: too many concurrent writes")

    async def pod_logs(self, job_name: str, tail_lines: int = 2000) -> tuple[str, list[str]] | None:
        """(pod name, lines) of the newest pod of a Job; None if it has no pod any more."""
        listing = self.client.list(Pod, namespace=self.namespace, labels={JOB_NAME_LABEL: job_name})
        pods = [to_dict(p) for p in await self._call(_collect(listing))]
        if not pods:
            return None
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        name = pod["metadata"]["name"]
        log = self.client.log(name, namespace=self.namespace, tail_lines=tail_lines, newlines=False)
        lines: list[str] = await self._call(_collect(log))
        return name, lines

    async def follow_pod_log(self, job_name: str) -> AsyncIterator[str]:
        """The log of a Job's newest pod as it is written (from its start), until the container ends;
        nothing if the Job has no pod yet. No deadline: the caller cancels."""
        listing = self.client.list(Pod, namespace=self.namespace, labels={JOB_NAME_LABEL: job_name})
        pods = [to_dict(p) for p in await self._call(_collect(listing))]
        if not pods:
            return
        pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        async for line in self.client.log(
            pod["metadata"]["name"], namespace=self.namespace, follow=True, newlines=False
        ):
            yield line


async def _collect(items: AsyncIterable[Any]) -> list[Any]:
    """Read a lightkube async iterable completely (so its errors surface inside `_call`)."""
    return [item async for item in items]
