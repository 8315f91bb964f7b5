"""Execution → Job, and Job/Pod state → Execution status. Level-triggered and idempotent.

Every watch event of an Execution (and the initial listing after a restart) runs `on_execution`,
which looks at the object as it is and does what is missing. The Job's name is derived from the
Execution's name and uid, and a 409 on create adopts the Job made by an earlier attempt, so running
this twice, or after a crash halfway, never makes a second Job. Nothing is stored in annotations.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

from lightkube import AsyncClient

from agentry_common import constants as c
from agentry_common.models import ConcurrencyPolicy, Phase, Trigger
from agentry_common.naming import job_name

from .. import kube
from ..builders.execution_status import Observed, observe, observe_pod, status_patch
from ..builders.governance import ended_with_token, record_before_job
from ..builders.job import build_job, owner_reference
from ..conditions import get_condition, now_rfc3339, set_condition
from ..config import OperatorConfig
from .admission import admission, ensure_token_secret
from .approval import on_waiting, pause
from .state import Key, Logger, State, phase_of

AGENT_WAIT_SECONDS = 60  # an Agent applied together with its Execution has time to land
RETRY_SECONDS = 5


def _key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


async def _write(client: AsyncClient, state: State, body: dict[str, Any], status: dict[str, Any]) -> None:
    ns, name = _key(body)
    await kube.patch_status(client, kube.Execution, name, ns, status)
    state.wrote_status((ns, name), status)
    if state.governance is not None and ended_with_token(body, status):
        await state.governance.end(body)


async def _decide(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    phase: Phase,
    reason: str,
    message: str,
    conditions: list[dict[str, Any]] | None = None,
) -> None:
    """Write a phase the operator decides itself (not read from a Job); `conditions` replace the
    current ones (before Succeeded is set) when given."""
    status, gen = body.get("status") or {}, body["metadata"].get("generation")
    now = now_rfc3339()
    succeeded = (phase == Phase.SUCCEEDED) if phase.terminal else None
    base = status.get("conditions") if conditions is None else conditions
    patch: dict[str, Any] = {
        "phase": phase.value,
        "reason": reason,
        "message": message,
        "conditions": set_condition(base, "Succeeded", succeeded, reason, message, gen, now),
        "observedGeneration": gen,
    }
    if phase.terminal:
        patch["completionTime"] = now
    await _write(client, state, body, patch)


async def on_execution(
    client: AsyncClient,
    config: OperatorConfig,
    state: State,
    body: dict[str, Any],
    logger: Logger,
    listing: bool = False,
) -> None:
    """Bring one Execution forward from wherever it is.

    `listing` marks the initial listing after a (re)start: Job events missed while the operator was
    down are then recovered by reading the Job itself.
    """
    phase = phase_of(body)
    if phase is not None and phase.terminal:
        return
    if body["spec"].get("cancel"):
        await cancel(client, state, body, logger)
        return
    if phase == Phase.WAITING_APPROVAL:
        outcome = await on_waiting(client, config, state, body, logger)
        status = body.get("status") or {}
        if outcome is not None and (status.get("phase"), status.get("reason"), status.get("message")) != (
            outcome[0].value,
            outcome[1],
            outcome[2],
        ):
            await _decide(client, state, body, *outcome)
        return
    job_name_ = (body.get("status") or {}).get("jobName")
    if job_name_:
        if listing:
            await resync(client, state, body, job_name_)
        return  # running: its Job's and Pods' events drive the status from here
    try:
        await start(client, config, state, body, logger)
    except Exception as exc:
        logger.warning(
            "starting execution %s failed, retrying in %s s: %s", body["metadata"]["name"], RETRY_SECONDS, exc
        )
        state.retry_later(_key(body), RETRY_SECONDS)


async def _agent(client: AsyncClient, state: State, namespace: str, name: str) -> dict[str, Any] | None:
    cached = state.agents.get((namespace, name))
    if cached is not None:
        return cached
    # The initial listings of Agents and Executions race after a restart: ask once.
    return await kube.get_or_none(client, kube.Agent, name, namespace)


async def start(
    client: AsyncClient, config: OperatorConfig, state: State, body: dict[str, Any], logger: Logger
) -> None:
    meta, spec = body["metadata"], body["spec"]
    key = _key(body)
    agent_name = spec["agentRef"]["name"]
    agent = await _agent(client, state, meta["namespace"], agent_name)
    if agent is None:
        since = state.waiting_for_agent.setdefault(key, time.monotonic())
        if time.monotonic() - since > AGENT_WAIT_SECONDS:
            state.waiting_for_agent.pop(key, None)
            await _decide(
                client,
                state,
                body,
                Phase.FAILED,
                "AgentNotFound",
                f"Agent {agent_name!r} does not exist in namespace {meta['namespace']}",
            )
        elif (body.get("status") or {}).get("reason") != "AgentNotFound":
            await _decide(
                client,
                state,
                body,
                Phase.PENDING,
                "AgentNotFound",
                f"waiting for Agent {agent_name!r} to exist",
            )
        state.retry_later(key, RETRY_SECONDS)
        return
    state.waiting_for_agent.pop(key, None)

    ready = get_condition((agent.get("status") or {}).get("conditions"), "Ready")
    if ready is not None and ready.get("status") == "False" and ready.get("reason") == "InvalidSpec":
        await _decide(
            client,
            state,
            body,
            Phase.FAILED,
            "InvalidAgent",
            f"Agent {agent_name!r} is invalid: {ready.get('message', '')}",
        )
        return

    scheduled = phase_of(body) in (None, Phase.PENDING) and spec.get("trigger") == Trigger.SCHEDULE.value
    if scheduled and await _schedule_gate(client, state, body, agent, logger):
        return

    status = body.get("status") or {}
    correlation_id = spec.get("correlationId") or status.get("correlationId") or uuid.uuid4().hex
    child = job_name(meta["name"], meta["uid"])
    token_secret: str | None = None
    if config.governed:
        verdict = await admission(client, config, state, body, agent, child, logger)
        if verdict is None:
            return  # asked recently (its retry is scheduled), or being asked
        if not verdict.start:
            if (status.get("phase"), status.get("reason"), status.get("message")) != (
                verdict.phase.value,
                verdict.reason,
                verdict.message,
            ):
                await _decide(
                    client, state, body, verdict.phase, verdict.reason, verdict.message, verdict.conditions
                )
            return
        if record_before_job(verdict, status.get("conditions")):
            await _write(client, state, body, {"conditions": verdict.conditions})
        status = {**status, "conditions": verdict.conditions}
        token_secret = await ensure_token_secret(client, state, body, agent, child)
    job = await kube.create_or_adopt(
        client, build_job(body, agent, correlation_id, config, token_secret=token_secret)
    )
    logger.info(
        "job %s for execution %s correlation_id=%s",
        child,
        meta["name"],
        correlation_id,
        extra={"correlation_id": correlation_id},
    )
    new = status_patch(status, observe(job, []), meta.get("generation"), now_rfc3339())
    await _write(client, state, body, {**new, "jobName": child, "correlationId": correlation_id})


async def _schedule_gate(
    client: AsyncClient, state: State, body: dict[str, Any], agent: dict[str, Any], logger: Logger
) -> bool:
    """Starting deadline and concurrencyPolicy for scheduled runs. True if this run is skipped."""
    meta, spec = body["metadata"], body["spec"]
    schedule = agent["spec"].get("schedule") or {}
    deadline = schedule.get("startingDeadlineSeconds")
    if deadline and spec.get("scheduledTime"):
        scheduled = dt.datetime.fromisoformat(spec["scheduledTime"].replace("Z", "+00:00"))
        late = (dt.datetime.now(dt.UTC) - scheduled).total_seconds()
        if late > deadline:
            await _decide(
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
    active = sorted(
        e["metadata"]["name"]
        for e in state.executions_of(meta["namespace"], spec["agentRef"]["name"])
        if e["metadata"]["name"] != meta["name"]
        and e["metadata"].get("creationTimestamp", "") <= meta.get("creationTimestamp", "")
        and not (phase_of(e) or Phase.PENDING).terminal
        and not e["spec"].get("cancel")
    )
    if not active:
        return False
    if policy == ConcurrencyPolicy.FORBID:
        await _decide(
            client,
            state,
            body,
            Phase.SKIPPED,
            "ConcurrencyForbidden",
            f"previous run {', '.join(active)} is still active (concurrencyPolicy: Forbid)",
        )
        return True
    for other in active:
        logger.info("replacing %s with %s (concurrencyPolicy: Replace)", other, meta["name"])
        await kube.patch_merge(client, kube.Execution, other, meta["namespace"], {"spec": {"cancel": True}})
    return False


async def cancel(client: AsyncClient, state: State, body: dict[str, Any], logger: Logger) -> None:
    meta = body["metadata"]
    child = (body.get("status") or {}).get("jobName") or job_name(meta["name"], meta["uid"])
    # Status first: the Job's deletion event must find the run already Cancelled, not lost.
    await _decide(
        client, state, body, Phase.CANCELLED, "Cancelled", "cancelled by spec.cancel; its Job was deleted"
    )
    deleted = await kube.delete_quietly(client, kube.Job, child, meta["namespace"])
    logger.info("cancelled execution %s (job %s %s)", meta["name"], child, "deleted" if deleted else "absent")


def execution_of(body: dict[str, Any]) -> str | None:
    """The Execution a Job or Pod belongs to (full name from our annotation)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(c.ANNOTATION_EXECUTION)


def _current_job(body: dict[str, Any]) -> str:
    meta = body["metadata"]
    return str((body.get("status") or {}).get("jobName") or job_name(meta["name"], meta["uid"]))


def _terminal_job(job: dict[str, Any]) -> bool:
    conds = {
        c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"
    }
    return bool(conds & {"Complete", "Failed", "FailureTarget", "SuccessCriteriaMet"})


async def on_job(client: AsyncClient, state: State, event: str, job: dict[str, Any]) -> None:
    """A Job's event: its outcome (the Pods' events carry the rest)."""
    name = execution_of(job)
    ns = job["metadata"]["namespace"]
    body = state.executions.get((ns, name or ""))
    if body is None or (phase_of(body) or Phase.PENDING).terminal:
        return
    if job["metadata"]["name"] != _current_job(body):
        return  # a Job the run has moved past (paused before an approval): its end is not the run's
    if event == "DELETED":
        if not body["spec"].get("cancel"):
            await _decide(
                client,
                state,
                body,
                Phase.FAILED,
                "JobDeleted",
                f"its Job {job['metadata']['name']} was deleted before the run finished",
            )
        return
    if not _terminal_job(job):
        return
    pods = [
        kube.to_dict(p)
        async for p in client.list(
            kube.Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": job["metadata"]["name"]}
        )
    ]
    await _apply(client, state, body, observe(job, pods), job["metadata"]["name"], pods)


async def resync(client: AsyncClient, state: State, body: dict[str, Any], child: str) -> None:
    """Read the Job (and Pods) of a running Execution and apply what they say."""
    ns = body["metadata"]["namespace"]
    job = await kube.get_or_none(client, kube.Job, child, ns)
    await on_job(
        client,
        state,
        "DELETED" if job is None else "MODIFIED",
        job
        or {
            "metadata": {
                "name": child,
                "namespace": ns,
                "annotations": {c.ANNOTATION_EXECUTION: body["metadata"]["name"]},
            }
        },
    )
    if job is not None and not _terminal_job(job):
        async for pod in client.list(kube.Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": child}):
            await on_pod(client, state, "MODIFIED", kube.to_dict(pod))


async def on_pod(client: AsyncClient, state: State, event: str, pod: dict[str, Any]) -> None:
    """A Pod's event: running, or stuck for a reason a person should read."""
    name = execution_of(pod)
    ns = pod["metadata"]["namespace"]
    body = state.executions.get((ns, name or ""))
    if event == "DELETED" or body is None or (phase_of(body) or Phase.PENDING).terminal:
        return
    job = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name", "")
    seen = observe_pod(pod)
    if seen is not None and job == _current_job(body):
        await _apply(client, state, body, seen, job, [pod])


async def _apply(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    seen: Observed,
    job: str,
    pods: list[dict[str, Any]],
) -> None:
    status = body.get("status") or {}
    if seen.phase == Phase.WAITING_APPROVAL:
        if status.get("phase") == Phase.WAITING_APPROVAL.value:
            return
        seen = await pause(client, state, body, seen, pods)
    if (status.get("phase"), status.get("reason"), status.get("message")) == (
        seen.phase.value,
        seen.reason,
        seen.message,
    ) and not seen.phase.terminal:
        return
    patch = status_patch(status, seen, body["metadata"].get("generation"), now_rfc3339())
    await _write(client, state, body, patch)
    if seen.stop_job and job:  # after the terminal status, so the deletion is not mistaken for a loss
        await kube.delete_quietly(client, kube.Job, job, body["metadata"]["namespace"])


def adopt_patch(body: dict[str, Any], agent: dict[str, Any]) -> dict[str, Any] | None:
    """Label and owner reference tying an Execution to its Agent (None if already there)."""
    meta = body["metadata"]
    name = body["spec"]["agentRef"]["name"]
    labels = meta.get("labels") or {}
    owners = meta.get("ownerReferences") or []
    if labels.get(c.LABEL_AGENT) == name[:63] and any(
        o.get("uid") == agent["metadata"]["uid"] for o in owners
    ):
        return None
    return {
        "metadata": {
            "labels": {c.LABEL_AGENT: name[:63]},
            "ownerReferences": [*owners, owner_reference(agent, controller=False)],
        }
    }
