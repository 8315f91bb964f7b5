"""Job and Pod state → Execution status, and the two ways a status is written.

A terminal status is written in one patch together with what the run's pod reported (status.result
and status.usage), read from the pod's termination message: the Agent's totals add up the usage of
terminal Executions, so a run must never end without it (or without a reason saying it is unknown).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from lightkube import AsyncClient
from lightkube.core.client import LabelSelector

from agentry_common import constants as c
from agentry_common.conditions import ConditionType, Reason
from agentry_common.models import ExecutionStatus, Phase
from agentry_common.naming import job_name

from .. import kube
from ..builders import kinds
from ..builders.execution_status import Observed, observe, observe_pod, status_patch, terminal_job
from ..builders.governance import ended_with_token
from ..conditions import get_condition, now_rfc3339, set_condition
from .approval import pause
from .state import Key, State, phase_of

log = logging.getLogger("agentry.operator")
JOB_LABEL = "batch.kubernetes.io/job-name"
OURS: LabelSelector = {c.LABEL_MANAGED_BY: c.MANAGED_BY}  # the Jobs and Pods the operator made
# Jobs and Pods are read as plain dicts: lightkube's typed models cost a conversion both ways (and at a
# restart's resync, pages of them added 15-19 MiB to the peak; bench/operator_scale.py).
JOBS, PODS = kube.namespaced("batch/v1", "Job"), kube.namespaced("v1", "Pod")


def key_of(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


async def write_status(
    client: AsyncClient, state: State, body: dict[str, Any], status: ExecutionStatus
) -> None:
    ns, name = key_of(body)
    sent = await kube.patch_status(client, kube.Execution, name, ns, status)
    state.wrote_status((ns, name), sent)
    if state.governance is not None and ended_with_token(body, sent):
        await state.governance.end(body)


def said(status: Mapping[str, object], phase: Phase, reason: str, message: str) -> bool:
    """Whether the status says this already (its phase, reason and message): nothing to write."""
    return (status.get("phase"), status.get("reason"), status.get("message")) == (
        phase.value,
        reason,
        message,
    )


async def decide(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    phase: Phase,
    reason: Reason,
    message: str,
    conditions: list[kinds.Condition] | None = None,
) -> None:
    """Write a phase the operator decides itself (not read from a Job); `conditions` replace the
    current ones (before Succeeded is set) when given."""
    status, gen = body.get("status") or {}, body["metadata"].get("generation")
    now = now_rfc3339()
    succeeded = (phase == Phase.SUCCEEDED) if phase.terminal else None
    base = status.get("conditions") if conditions is None else conditions
    patch = ExecutionStatus(
        phase=phase,
        reason=str(reason),
        message=message,
        conditions=set_condition(base, ConditionType.SUCCEEDED, succeeded, reason, message, gen, now),
        observed_generation=gen,
    )
    if phase.terminal:
        patch.completion_time = now
    await write_status(client, state, body, patch)


def execution_of(body: dict[str, Any]) -> str | None:
    """The Execution a Job or Pod belongs to (full name from our annotation)."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(c.ANNOTATION_EXECUTION)


def current_job(body: dict[str, Any]) -> str:
    meta = body["metadata"]
    return str((body.get("status") or {}).get("jobName") or job_name(meta["name"], meta["uid"]))


async def on_job(client: AsyncClient, state: State, event: str | None, job: dict[str, Any]) -> None:
    """A Job's event (None: listed): its outcome, with what its pods reported (their own events carry
    the rest)."""
    name = execution_of(job)
    ns = job["metadata"]["namespace"]
    body = state.executions.get((ns, name or ""))
    if body is None or (phase_of(body) or Phase.PENDING).terminal:
        return
    if job["metadata"]["name"] != current_job(body):
        return  # a Job the run has moved past (paused before an approval): its end is not the run's
    if _claim_in_flight(body.get("status")):
        return  # the claim reads its Job once it is done, or releases it (pool/claim.py)
    if event == "DELETED":
        if not body["spec"].get("cancel"):
            await decide(
                client,
                state,
                body,
                Phase.FAILED,
                Reason.JOB_DELETED,
                f"its Job {job['metadata']['name']} was deleted before the run finished",
            )
        return
    if not terminal_job(job):
        return
    pods = [
        kube.to_dict(p)
        async for p in client.list(PODS, namespace=ns, labels={JOB_LABEL: job["metadata"]["name"]})
    ]
    await apply(client, state, body, observe(job, pods), job["metadata"]["name"], pods)


async def resync_all(client: AsyncClient, state: State, keys: list[Key]) -> None:
    """Read the Jobs and Pods of running Executions and apply what they say: after a restart (the
    listing's Executions), or when a Job made by an earlier, crashed attempt is adopted (its pods
    may have run meanwhile). One paged listing of our Jobs and one of our Pods per namespace, not a
    read per Execution (ten thousand Executions were 20,000 requests, and each Pod list by label
    scanned the namespace). A Job the listing does not have is read by name (deleted: JobDeleted)."""
    wanted: dict[str, dict[str, str]] = {}  # namespace -> job -> execution
    for key in keys:
        body = state.executions.get(key)
        if body is not None and (body.get("status") or {}).get("jobName"):
            wanted.setdefault(key[0], {})[current_job(body)] = key[1]
    for ns, jobs in sorted(wanted.items()):
        owner = dict(jobs)
        running = await _listed_jobs(client, state, ns, jobs)
        if running:
            async for pod in client.list(PODS, namespace=ns, labels=OURS, chunk_size=kube.LIST_CHUNK):
                item = kube.to_dict(pod)
                job = (item["metadata"].get("labels") or {}).get(JOB_LABEL)
                if job in running:
                    await _isolated(state, (ns, owner[job]), on_pod(client, state, "MODIFIED", item))
        for job, name in sorted(jobs.items()):  # not in the listing: read by name (gone: JobDeleted)
            body = state.executions.get((ns, name))
            if body is not None:
                await _isolated(state, (ns, name), resync(client, state, body, job))


async def _isolated(state: State, key: Key, step: Awaitable[None]) -> None:
    """One Execution's part of a resync: its failure (a write refused) puts that one back in the
    queue, alone; the others go on."""
    try:
        await step
    except Exception as exc:
        log.warning("resync of execution %s/%s failed, again soon: %s", *key, exc)
        state.resync_later(key)


async def _listed_jobs(client: AsyncClient, state: State, ns: str, jobs: dict[str, str]) -> set[str]:
    """Apply each listed Job of `jobs`; the names of those still running. A listed ended Job is
    dropped from `jobs` (applied: nothing more to read); the rest stay (read by name after)."""
    running: set[str] = set()
    async for found in client.list(JOBS, namespace=ns, labels=OURS, chunk_size=kube.LIST_CHUNK):
        job = kube.to_dict(found)
        name = job["metadata"]["name"]
        if name not in jobs:
            continue
        await _isolated(state, (ns, jobs[name]), on_job(client, state, "MODIFIED", job))
        if terminal_job(job):
            del jobs[name]
        else:
            running.add(name)
    for name in running:
        del jobs[name]
    return running


async def resync(client: AsyncClient, state: State, body: dict[str, Any], child: str) -> None:
    """Read the Job (and Pods) of one running Execution by name and apply what they say."""
    ns = body["metadata"]["namespace"]
    job = await kube.get_or_none(client, JOBS, child, ns)
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
    if job is not None and not terminal_job(job):
        async for pod in client.list(PODS, namespace=ns, labels={JOB_LABEL: child}):
            await on_pod(client, state, "MODIFIED", kube.to_dict(pod))


async def on_pod(client: AsyncClient, state: State, event: str | None, pod: dict[str, Any]) -> None:
    """A Pod's event (None: listed): running, or stuck for a reason a person should read."""
    name = execution_of(pod)
    ns = pod["metadata"]["namespace"]
    body = state.executions.get((ns, name or ""))
    if event == "DELETED" or body is None or (phase_of(body) or Phase.PENDING).terminal:
        return
    if _claim_in_flight(body.get("status")):
        # A claimed warm pod may run (and end) its run before the claim has written `Claimed`: a
        # status written now would carry `Claiming` over it. The claim reads the pod once it is done.
        return
    job = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name", "")
    seen = observe_pod(pod)
    if (
        seen is not None
        and seen.reason == Reason.INTERRUPTED
        and await _replaced(client, ns, job, pod["metadata"])
    ):
        return  # a late event of a pod that stopped at a checkpoint: its replacement speaks for the run
    if seen is not None and job == current_job(body):
        await apply(client, state, body, seen, job, [pod])


def _claim_in_flight(status: object) -> bool:
    """The run's claim of a warm pod is recorded and not finished (pool/claim.py)."""
    conditions = status.get("conditions") if isinstance(status, dict) else None
    found = get_condition(conditions if isinstance(conditions, list) else None, ConditionType.POOLED)
    return found is not None and found.get("reason") == Reason.CLAIMING


async def _replaced(client: AsyncClient, ns: str, job: str, meta: Mapping[str, str]) -> bool:
    """Whether the Job has a pod newer than the one of `meta` (created after it, or in the same second)."""
    since = meta.get("creationTimestamp") or ""
    async for other in client.list(PODS, namespace=ns, labels={JOB_LABEL: job}):
        other_meta = kube.to_dict(other)["metadata"]
        if other_meta["name"] != meta["name"] and (other_meta.get("creationTimestamp") or "") >= since:
            return True
    return False


async def apply(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    seen: Observed,
    job: str,
    pods: list[dict[str, Any]],
) -> None:
    status = body.get("status") or {}
    if seen.next_job:  # the pod stopped at a checkpoint: the queue's reconcile starts the next Job
        state.queue.add(key_of(body))
    if seen.phase == Phase.WAITING_APPROVAL:
        if status.get("phase") == Phase.WAITING_APPROVAL.value:
            return
        seen = await pause(client, state, body, seen, pods)
    if said(status, seen.phase, seen.reason, seen.message) and not seen.phase.terminal:
        return
    patch = status_patch(status, seen, body["metadata"].get("generation"), now_rfc3339())
    await write_status(client, state, body, patch)
    if seen.stop_job and job:  # after the terminal status, so the deletion is not mistaken for a loss
        await kube.delete_quietly(client, kube.Job, job, body["metadata"]["namespace"])
