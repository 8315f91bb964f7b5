"""Execution → Job, and Job/Pod state → Execution status. Level-triggered and idempotent.

Every watch event of an Execution (and the initial listing after a restart) runs `on_execution`,
which queues the run unless it needs nothing; the queue's `reconcile` looks at the object as it is
and does what is missing. The Job's name is derived from the
Execution's name and uid, and a 409 on create adopts the Job made by an earlier attempt, so running
this twice, or after a crash halfway, never makes a second Job. Nothing is stored in annotations.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from typing import Any

from lightkube import ApiError, AsyncClient

from agentry_common import tracing
from agentry_common.conditions import ConditionType, Reason
from agentry_common.models import ConcurrencyPolicy, ExecutionStatus, Phase, Trigger
from agentry_common.naming import job_name, token_secret_name

from .. import kube
from ..builders.execution_status import observe, status_patch, terminal_job
from ..builders.follow_up import Parent
from ..builders.governance import record_before_job
from ..builders.job import build_job, effective_spec
from ..builders.refusal import Action
from ..builders.run_gate import WAIT_SECONDS, Held, owner_held
from ..conditions import get_condition, now_rfc3339
from ..pool.claim import Claim, Step, claiming, finish, release, start_pooled
from ..settings import Settings
from ..tracing import reconcile_span
from .admission import admission, ensure_token_secret
from .approval import on_waiting
from .follow_up import follow_up_gate, resumed_parent
from .next_job import continue_run, interrupted
from .outcome import decide, key_of, on_job, on_pod, resync, said, write_status
from .state import Key, Logger, State, phase_of
from .workspace import ensure_claim, held_for_workspace

__all__ = ["cancel", "on_execution", "on_job", "on_pod", "reconcile", "start"]

log = logging.getLogger("agentry.operator")

AGENT_WAIT_SECONDS = 60  # an Agent applied together with its Execution has time to land
RETRY_SECONDS = 5
AGENT_READ_SECONDS = 2.0  # a read of a missing Agent serves the runs asking this long


async def on_execution(
    client: AsyncClient,
    config: Settings,
    state: State,
    body: dict[str, Any],
    logger: Logger,
    listing: bool = False,
) -> None:
    """An Execution's event: a run that needs nothing (ended, or running) returns at once; any other is
    queued for `reconcile` (the controller's queue, controller/queue.py).

    `listing` marks the initial listing after a (re)start, or a retry: Job events missed (while the
    operator was down, or before a crashed attempt recorded its Job) are then recovered by reading
    the Job itself (soon, with the others: outcome.resync_all), and an ended run is only written
    with what its pod reported.
    """
    phase = phase_of(body)
    if phase is not None and phase.terminal:
        return
    key = key_of(body)
    status = body.get("status") or {}
    running = status.get("jobName") and phase != Phase.WAITING_APPROVAL and not claiming(status)
    if running and not body["spec"].get("cancel"):
        if listing:
            state.resync_later(key)
        return  # running: its Job's and Pods' events drive the status from here
    state.queue.add(key, again=listing)


async def reconcile(client: AsyncClient, config: Settings, state: State, key: Key, again: bool) -> None:
    """The queue's reconcile of one Execution, as it is now (it may have moved on, or gone); `again`:
    back by a timer (a retry, a wait that ended), not by an event."""
    body = state.executions.get(key)
    if body is None:
        return
    phase = phase_of(body)
    if phase is not None and phase.terminal:
        return
    if body["spec"].get("cancel"):
        await cancel(client, state, body, log)
    elif phase == Phase.WAITING_APPROVAL:
        await _waiting(client, config, state, body, log)
    elif claiming(body.get("status") or {}):  # a claim recorded before a restart (pool/claim.py)
        await _finish_claim(client, config, state, key)
    elif (body.get("status") or {}).get("jobName"):
        if interrupted(body.get("status") or {}) and await _continue(client, config, state, key):
            return
        if again:
            state.resync_later(key)
    else:
        await _start(client, config, state, body, log)


async def _start(
    client: AsyncClient, config: Settings, state: State, body: dict[str, Any], logger: Logger
) -> None:
    state.last_start = time.monotonic()
    with reconcile_span(body) as span:
        try:
            await start(client, config, state, body, logger)
        except kube.Refused as exc:
            tracing.set_error(span, exc.describe())
            await _refused(client, state, body, exc, logger)
        except Exception as exc:
            tracing.set_error(span, type(exc).__name__)
            _retry(state, body, exc, logger)
        else:
            state.queue.succeeded(key_of(body))


async def _continue(client: AsyncClient, config: Settings, state: State, key: Key) -> bool:
    """A run whose pod stopped at a checkpoint: its next Job (next_job.py); whether one was started."""
    body = state.executions[key]
    agent = await _agent(client, state, body["metadata"]["namespace"], body["spec"]["agentRef"]["name"])
    if agent is None:  # gone meanwhile: the run cannot go on; its Job's end says so (resync)
        return False
    try:
        return await continue_run(client, config, state, body, agent, log)
    except kube.Refused as exc:
        await _refused(client, state, body, exc, log)
    except Exception as exc:
        _retry(state, body, exc, log)
    return True


async def _waiting(
    client: AsyncClient, config: Settings, state: State, body: dict[str, Any], logger: Logger
) -> None:
    """A paused run: resume it, or end it, on its approval's decision (or timeout)."""
    try:
        outcome = await on_waiting(client, config, state, body, logger)
    except kube.Refused as exc:  # the resume's Job (or Secret): fail if for good, else try again
        if exc.action == Action.FAIL:
            await _fail(client, state, body, exc, logger)
        else:
            _retry(state, body, exc, logger)
        return
    status = body.get("status") or {}
    if outcome is not None and not said(status, outcome[0], outcome[1], outcome[2]):
        await decide(client, state, body, *outcome)
    if outcome is None and phase_of(state.executions.get(key_of(body), body)) != Phase.WAITING_APPROVAL:
        # Resumed: its Job may be one adopted after a crash, already run (even ended) meanwhile;
        # the retry (listing) reads it.
        state.queue.add(key_of(body), again=True)


def _retry(state: State, body: dict[str, Any], exc: Exception, logger: Logger) -> None:
    """Try again later, backing off (the queue's: 5 s, doubling with each failure in a row, up to 5
    minutes)."""
    key = key_of(body)
    delay = state.queue.failed(key)
    why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    logger.warning("starting execution %s failed, retrying in %s s: %s", key[1], delay, why)


async def _refused(
    client: AsyncClient, state: State, body: dict[str, Any], exc: kube.Refused, logger: Logger
) -> None:
    """The API server refused a child of a starting run: fail it, or wait for quota, or retry."""
    if exc.action == Action.FAIL:
        await _fail(client, state, body, exc, logger)
        return
    _retry(state, body, exc, logger)
    status = body.get("status") or {}
    message = exc.describe()
    if exc.action == Action.WAIT and (status.get("reason"), status.get("message")) != (
        Reason.QUOTA_EXCEEDED,
        message,
    ):
        await decide(client, state, body, Phase.PENDING, Reason.QUOTA_EXCEEDED, message)


async def _fail(
    client: AsyncClient, state: State, body: dict[str, Any], exc: kube.Refused, logger: Logger
) -> None:
    """End the run Failed (InvalidJob) with the server's words; never retried. The gateway is told
    (the attempt's run token admits no more calls) and its token Secret deleted if the operator may;
    that Secret (and a resume's ConfigMap) is owned by the Execution and goes with it anyway."""
    message = exc.describe()
    logger.error("execution %s failed: %s", body["metadata"]["name"], message)
    try:
        if state.governance is not None:
            await state.governance.end(body)  # best effort: never raises
            if exc.kind == "Job":
                await _delete_token_secret(client, body, token_secret_name(exc.name), logger)
        await decide(client, state, body, Phase.FAILED, Reason.INVALID_JOB, message)
    except Exception as err:  # the end could not be written: the next attempt meets the same refusal
        _retry(state, body, err, logger)
        return
    state.queue.succeeded(key_of(body))


async def _delete_token_secret(client: AsyncClient, body: dict[str, Any], name: str, logger: Logger) -> None:
    """Best effort: without the `delete` verb on secrets the Secret stays until the Execution goes."""
    try:
        await kube.delete_quietly(client, kube.Secret, name, body["metadata"]["namespace"])
    except ApiError as exc:
        logger.info("token Secret %s of a refused Job left to its owner: %s", name, exc.status.message)


async def _agent(client: AsyncClient, state: State, namespace: str, name: str) -> dict[str, Any] | None:
    cached = state.agents.get((namespace, name))
    if cached is not None:
        return cached
    # The initial listings of Agents and Executions race after a restart (or the Agents' watch is
    # being retried): one read of the Agent, shared by the runs that ask within AGENT_READ_SECONDS.
    key, now = (namespace, name), time.monotonic()
    since, read = state.agent_reads.get(key, (0.0, None))
    if read is None or now - since > AGENT_READ_SECONDS:
        read = asyncio.ensure_future(kube.get_or_none(client, kube.Agent, name, namespace))
        state.agent_reads[key] = (now, read)
    return await asyncio.shield(read)


async def start(
    client: AsyncClient, config: Settings, state: State, body: dict[str, Any], logger: Logger
) -> None:
    meta, spec = body["metadata"], body["spec"]
    key = key_of(body)
    agent_name = spec["agentRef"]["name"]
    agent = await _agent(client, state, meta["namespace"], agent_name)
    if agent is None:
        since = state.waiting_for_agent.setdefault(key, time.monotonic())
        if time.monotonic() - since > AGENT_WAIT_SECONDS:
            state.waiting_for_agent.pop(key, None)
            await decide(
                client,
                state,
                body,
                Phase.FAILED,
                Reason.AGENT_NOT_FOUND,
                f"Agent {agent_name!r} does not exist in namespace {meta['namespace']}",
            )
        elif (body.get("status") or {}).get("reason") != Reason.AGENT_NOT_FOUND:
            await decide(
                client,
                state,
                body,
                Phase.PENDING,
                Reason.AGENT_NOT_FOUND,
                f"waiting for Agent {agent_name!r} to exist",
            )
        state.queue.add_after(key, RETRY_SECONDS)
        return
    state.waiting_for_agent.pop(key, None)

    ready = get_condition((agent.get("status") or {}).get("conditions"), ConditionType.READY)
    if ready is not None and ready.get("status") == "False" and ready.get("reason") == Reason.INVALID_SPEC:
        await decide(
            client,
            state,
            body,
            Phase.FAILED,
            Reason.INVALID_AGENT,
            f"Agent {agent_name!r} is invalid: {ready.get('message', '')}",
        )
        return

    # The run gate (run_gate.py): ownership and policy first, so that a refused run never acts on its
    # Agent's other runs (concurrencyPolicy Replace); the owner's quotas after the schedule's own rules.
    gate = state.gate
    if await _held(client, state, body, owner_held(body, agent) or gate.policy_held(config, body, agent)):
        return
    refused, parent = await follow_up_gate(client, config, state, body)
    if await _held(client, state, body, refused):
        return
    scheduled = phase_of(body) in (None, Phase.PENDING) and spec.get("trigger") == Trigger.SCHEDULE
    if scheduled and await _schedule_gate(client, state, body, agent, logger):
        return
    # A kept workspace before the quota slot: a run waiting for it holds no slot of its owner.
    run_spec = effective_spec(agent, config)
    kept = await held_for_workspace(client, state, meta, agent["metadata"], run_spec)
    if await _held(client, state, body, kept):
        return
    if await _held(client, state, body, await gate.admit(client, config, state, body, agent)):
        return

    await _run(client, config, state, body, agent, logger, parent)


async def _held(client: AsyncClient, state: State, body: dict[str, Any], held: Held | None) -> bool:
    """Write the gate's refusal (once: a waiting run is looked at again often); True if held."""
    if held is None:
        return False
    status = body.get("status") or {}
    if not said(status, held.phase, held.reason, held.message):
        await decide(client, state, body, held.phase, held.reason, held.message)
    if held.phase == Phase.PENDING:
        state.queue.add_after(key_of(body), WAIT_SECONDS)
    return True


async def _run(
    client: AsyncClient,
    config: Settings,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    logger: Logger,
    parent: Parent | None = None,
) -> None:
    """Admission (governed), then the run's Job: created, or adopted from a crashed attempt.
    `parent`: the run a follow-up continues."""
    meta, spec = body["metadata"], body["spec"]
    status = body.get("status") or {}
    correlation_id = spec.get("correlationId") or status.get("correlationId") or uuid.uuid4().hex
    child = job_name(meta["name"], meta["uid"])
    run_spec = effective_spec(agent, config)  # parsed once: for the run token and the Job
    token_secret: str | None = None
    if config.governed:
        verdict = await admission(client, config, state, body, agent, child, logger)
        if verdict is None:
            return  # asked recently (its retry is scheduled), or being asked
        if not verdict.start:
            if not said(status, verdict.phase, verdict.reason, verdict.message):
                await decide(
                    client, state, body, verdict.phase, verdict.reason, verdict.message, verdict.conditions
                )
            return
        if record_before_job(verdict, status.get("conditions")):
            await write_status(
                client, state, body, ExecutionStatus.model_validate({"conditions": verdict.conditions})
            )
        status = {**status, "conditions": verdict.conditions}
        token_secret = await ensure_token_secret(client, state, body, agent, child, run_spec, parent)
    await ensure_claim(client, config, agent["metadata"], run_spec)  # a kept workspace: the Agent's claim
    # The pod's spans are children of this reconcile's (tracing off: None, nothing added).
    traceparent = tracing.current_traceparent()
    manifest = build_job(
        body,
        agent,
        correlation_id,
        config,
        token_secret=token_secret,
        spec=run_spec,
        traceparent=traceparent,
        parent=parent,
    )
    # A warm pod of a pool, if one serves the run (pool/claim.py); else its own Job, and why.
    claim = Claim(client, config, state, body, manifest, token_secret)
    conditions = await start_pooled(claim, correlation_id, status.get("conditions") or [])
    if conditions is None:
        return
    status = {**status, "conditions": conditions}
    job = await kube.create_or_adopt(client, manifest)
    logger.info(
        "job %s for execution %s correlation_id=%s",
        child,
        meta["name"],
        correlation_id,
        extra={"correlation_id": correlation_id},
    )
    # An adopted Job that has ended was made by an attempt that crashed before recording it, and its
    # pod has finished meanwhile: its outcome is only written with that pod's report, by resync below.
    seen = observe(None if job is None or terminal_job(job) else job, [])
    new = status_patch(status, seen, meta.get("generation"), now_rfc3339(), child, correlation_id)
    await write_status(client, state, body, new)
    if job is not None and job.get("status"):  # adopted: its pods may have run, or ended, meanwhile
        await resync(client, state, state.executions.get(key_of(body), body), child)


async def _finish_claim(client: AsyncClient, config: Settings, state: State, key: Key) -> None:
    """Finish the claim a restart found recorded (each step repeats safely); a warm pod gone or taken
    meanwhile releases it, and the run starts again."""
    body = state.executions[key]
    meta, status = body["metadata"], body.get("status") or {}
    try:
        agent = await _agent(client, state, meta["namespace"], body["spec"]["agentRef"]["name"])
        parent = await resumed_parent(client, config, state, body)
        step = Step.GONE
        if agent is not None:
            child = job_name(meta["name"], meta["uid"])
            token_secret = token_secret_name(child) if config.governed else None
            manifest = build_job(
                body,
                agent,
                status.get("correlationId") or uuid.uuid4().hex,
                config,
                token_secret=token_secret,
                spec=effective_spec(agent, config),
                parent=parent,
            )
            step = await finish(Claim(client, config, state, body, manifest, token_secret), status["jobName"])
        if step is not Step.CLAIMED:
            await release(client, state, body, status["jobName"], delete=step is Step.GONE)
            state.queue.add(key_of(body))
    except Exception as exc:
        _retry(state, body, exc, log)


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
            await decide(
                client,
                state,
                body,
                Phase.SKIPPED,
                Reason.MISSED_STARTING_DEADLINE,
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
        await decide(
            client,
            state,
            body,
            Phase.SKIPPED,
            Reason.CONCURRENCY_FORBIDDEN,
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
    await decide(
        client,
        state,
        body,
        Phase.CANCELLED,
        Reason.CANCELLED,
        "cancelled by spec.cancel; its Job was deleted",
    )
    deleted = await kube.delete_quietly(client, kube.Job, child, meta["namespace"])
    logger.info("cancelled execution %s (job %s %s)", meta["name"], child, "deleted" if deleted else "absent")
