"""Execution → ConfigMap + Job, and Job/Pod state → Execution status."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from lightkube import AsyncClient

from agentry_common import constants as c
from agentry_common.models import ConcurrencyPolicy, Phase, Trigger
from agentry_common.naming import job_name

from .. import kube
from ..builders.execution_status import observe, status_patch
from ..builders.job import build_configmap, build_job, owner_reference
from ..conditions import get_condition, now_rfc3339, set_condition
from ..config import OperatorConfig
from .state import Logger, State

AGENT_LOOKUP_RETRIES = 12  # x 5 s: an Agent applied together with its Execution has time to land


class Retry(Exception):
    """Ask the caller to retry later (mapped to kopf.TemporaryError in main)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def _phase(body: dict[str, Any]) -> Phase | None:
    value = (body.get("status") or {}).get("phase")
    return Phase(value) if value else None


async def _finish(
    client: AsyncClient, state: State, body: dict[str, Any], phase: Phase, reason: str, message: str
) -> None:
    """Write a terminal (or waiting) phase decided by the operator itself, not by a Job."""
    meta, status = body["metadata"], body.get("status") or {}
    now = now_rfc3339()
    conds = set_condition(
        status.get("conditions"),
        "Succeeded",
        phase == Phase.SUCCEEDED if phase.terminal else None,
        reason,
        message,
        meta.get("generation"),
        now,
    )
    patch: dict[str, Any] = {
        "phase": phase.value,
        "reason": reason,
        "message": message,
        "conditions": conds,
        "observedGeneration": meta.get("generation"),
    }
    if phase.terminal:
        patch["completionTime"] = now
    await kube.patch_status(client, kube.Execution, meta["name"], meta["namespace"], patch)
    state.phase_changed(
        meta["namespace"], meta["name"], _phase(body), phase, body["spec"]["agentRef"]["name"]
    )


async def reconcile_execution(
    client: AsyncClient,
    config: OperatorConfig,
    state: State,
    body: dict[str, Any],
    retry: int,
    logger: Logger,
) -> None:
    meta, spec = body["metadata"], body["spec"]
    name, namespace = meta["name"], meta["namespace"]
    status = body.get("status") or {}
    current = _phase(body)
    if current is not None and current.terminal:
        return
    if spec.get("cancel"):
        await cancel_execution(client, state, body, logger)
        return

    agent_name = spec["agentRef"]["name"]
    agent = await kube.get_or_none(client, kube.Agent, agent_name, namespace)
    if agent is None:
        if retry >= AGENT_LOOKUP_RETRIES:
            await _finish(
                client,
                state,
                body,
                Phase.FAILED,
                "AgentNotFound",
                f"Agent {agent_name!r} does not exist in namespace {namespace}",
            )
            return
        if current is None:
            conds = set_condition(
                None,
                "Succeeded",
                None,
                "AgentNotFound",
                f"waiting for Agent {agent_name!r}",
                meta.get("generation"),
            )
            await kube.patch_status(
                client,
                kube.Execution,
                name,
                namespace,
                {
                    "phase": Phase.PENDING.value,
                    "reason": "AgentNotFound",
                    "message": f"waiting for Agent {agent_name!r} to exist",
                    "conditions": conds,
                },
            )
        raise Retry(f"Agent {agent_name!r} not found", delay=5)

    ready = get_condition((agent.get("status") or {}).get("conditions"), "Ready")
    if ready is not None and ready.get("status") == "False" and ready.get("reason") == "InvalidSpec":
        await _finish(
            client,
            state,
            body,
            Phase.FAILED,
            "InvalidAgent",
            f"Agent {agent_name!r} is invalid: {ready.get('message', '')}",
        )
        return

    # Adopt the Execution under its Agent: history pruning, listing and garbage collection.
    labels = meta.get("labels") or {}
    owners = meta.get("ownerReferences") or []
    if labels.get(c.LABEL_AGENT) != agent_name[:63] or not owners:
        await kube.patch_merge(
            client,
            kube.Execution,
            name,
            namespace,
            {
                "metadata": {
                    "labels": {c.LABEL_AGENT: agent_name[:63]},
                    "ownerReferences": owners or [owner_reference(agent, controller=False)],
                }
            },
        )

    if current is None and spec.get("trigger") == Trigger.SCHEDULE.value:
        skip = await _schedule_gate(client, state, body, agent, logger)
        if skip:
            return

    correlation_id = spec.get("correlationId") or status.get("correlationId") or uuid.uuid4().hex
    child = job_name(name, meta["uid"])
    await kube.create_or_adopt(client, build_configmap(body, agent, child))
    job = await kube.create_or_adopt(client, build_job(body, agent, correlation_id, config))
    logger.info(
        "job %s ready for execution %s correlation_id=%s",
        child,
        name,
        correlation_id,
        extra={"correlation_id": correlation_id},
    )
    await sync_execution(
        client,
        state,
        namespace,
        name,
        job=job,
        extra={"jobName": child, "correlationId": correlation_id},
    )


async def _schedule_gate(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    logger: Logger,
) -> bool:
    """Starting deadline and concurrencyPolicy for scheduled runs. True if this run is skipped."""
    meta, spec = body["metadata"], body["spec"]
    schedule = agent["spec"].get("schedule") or {}
    deadline = schedule.get("startingDeadlineSeconds")
    if deadline and spec.get("scheduledTime"):
        late = (
            dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(spec["scheduledTime"].replace("Z", "+00:00"))
        ).total_seconds()
        if late > deadline:
            await _finish(
                client,
                state,
                body,
                Phase.SKIPPED,
                "MissedStartingDeadline",
                f"started {late:.0f} s after its scheduled time, more than "
                f"startingDeadlineSeconds ({deadline})",
            )
            return True
    policy = ConcurrencyPolicy(schedule.get("concurrencyPolicy", "Forbid"))
    if policy == ConcurrencyPolicy.ALLOW:
        return False
    active = []
    async for other in client.list(
        kube.Execution,
        namespace=meta["namespace"],
        labels={
            c.LABEL_AGENT: meta["labels"][c.LABEL_AGENT]
            if c.LABEL_AGENT in (meta.get("labels") or {})
            else spec["agentRef"]["name"][:63]
        },
    ):
        o = kube.to_dict(other)
        if o["metadata"]["name"] == meta["name"] or o["spec"]["agentRef"]["name"] != spec["agentRef"]["name"]:
            continue
        phase = _phase(o)
        if phase is None or not phase.terminal:
            active.append(o["metadata"]["name"])
    if not active:
        return False
    if policy == ConcurrencyPolicy.FORBID:
        await _finish(
            client,
            state,
            body,
            Phase.SKIPPED,
            "ConcurrencyForbidden",
            f"previous run {', '.join(sorted(active))} is still active (concurrencyPolicy: Forbid)",
        )
        return True
    for other_name in active:
        logger.info("replacing %s (concurrencyPolicy: Replace)", other_name)
        await kube.patch_merge(
            client, kube.Execution, other_name, meta["namespace"], {"spec": {"cancel": True}}
        )
    return False


async def cancel_execution(client: AsyncClient, state: State, body: dict[str, Any], logger: Logger) -> None:
    meta = body["metadata"]
    current = _phase(body)
    if current is not None and current.terminal:
        return
    child = (body.get("status") or {}).get("jobName") or job_name(meta["name"], meta["uid"])
    deleted = await kube.delete_quietly(client, kube.Job, child, meta["namespace"])
    logger.info(
        "cancelled execution %s (job %s %s)",
        meta["name"],
        child,
        "deleted" if deleted else "absent",
    )
    await _finish(
        client,
        state,
        body,
        Phase.CANCELLED,
        "Cancelled",
        "cancelled by spec.cancel; its Job was deleted",
    )


async def sync_execution(
    client: AsyncClient,
    state: State,
    namespace: str,
    name: str,
    job: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    deleted_job: bool = False,
) -> None:
    """Recompute an Execution's status from its Job and Pods; write it if it changed."""
    body = await kube.get_or_none(client, kube.Execution, name, namespace)
    if body is None:
        return
    before = _phase(body)
    if before is not None and before.terminal:
        return
    status = body.get("status") or {}
    child = (extra or {}).get("jobName") or status.get("jobName")
    if not child:
        return  # the create handler has not made the Job yet
    if job is None:
        job = await kube.get_or_none(client, kube.Job, child, namespace)
    if job is None and body["spec"].get("cancel"):
        return
    if job is None and (deleted_job or before is not None):
        await _finish(
            client,
            state,
            body,
            Phase.FAILED,
            "JobDeleted",
            f"its Job {child} was deleted before the run finished",
        )
        return
    pods = [
        kube.to_dict(p)
        async for p in client.list(
            kube.Pod, namespace=namespace, labels={"batch.kubernetes.io/job-name": child}
        )
    ]
    seen = observe(job, pods)
    patch = status_patch(status, seen, body["metadata"].get("generation"), now_rfc3339())
    patch.update(extra or {})
    if all(status.get(k) == v for k, v in patch.items() if k != "conditions") and _same_conditions(
        status.get("conditions"), patch["conditions"]
    ):
        return
    await kube.patch_status(client, kube.Execution, name, namespace, patch)
    state.phase_changed(namespace, name, before, seen.phase, body["spec"]["agentRef"]["name"])
    if seen.stop_job:  # after the terminal status, so the Job's deletion is not mistaken for a loss
        await kube.delete_quietly(client, kube.Job, child, namespace)


def _same_conditions(a: list[dict[str, Any]] | None, b: list[dict[str, Any]]) -> bool:
    def key(conds: list[dict[str, Any]] | None) -> list[tuple[Any, ...]]:
        return sorted((x["type"], x["status"], x["reason"], x.get("message", "")) for x in conds or [])

    return key(a) == key(b)


def execution_of(body: dict[str, Any]) -> str | None:
    """The Execution a Job or Pod belongs to (full name from our annotation)."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    return annotations.get(c.ANNOTATION_EXECUTION)
