"""Agent: validate, keep its schedule object, and keep its status (Ready, totals, history)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import kopf
from lightkube import ApiError, AsyncClient

from agentry_common.conditions import ConditionType, Reason
from agentry_common.models import AgentStatus, Archived, Condition, HistoryLimits, ScheduleState, Trigger
from agentry_common.naming import cronjob_name

from .. import kube
from ..backends import BackendError, ScheduleBackend, is_cloud_ref, not_configured, uses_cloud_scheduler
from ..builders import kinds
from ..builders.agent_status import ARCHIVE_NAMES, archive, spec_errors, summarize, to_prune, uses_cronjob
from ..builders.cronjob import build_cronjob
from ..builders.governance import owner_of
from ..builders.model import model_label
from ..conditions import set_condition
from ..schedule import (
    ScheduleStep,
    catchup_due,
    fresh_state,
    next_run,
    rfc3339,
    schedule_changed,
    schedule_step,
    signature,
    upcoming_runs,
    with_backfill,
)
from ..settings import Settings
from ..tick import build_execution
from .adoption import adopt, agent_owner
from .execution import on_execution
from .journals import prune_journals
from .outcome import resync_all
from .state import Logger, State
from .workspace import reconcile_claim

PRUNE_BATCH = ARCHIVE_NAMES // 2  # Executions pruned per refresh of an Agent
# Resyncs wait until a restart's listing has settled (none added for this long), or at most this long.
RESYNC_QUIET_SECONDS, RESYNC_OLDEST_SECONDS = 2.0, 10.0


async def reconcile_agent(
    client: AsyncClient,
    config: Settings,
    state: State,
    body: dict[str, Any],
    logger: Logger,
    scheduler: ScheduleBackend | None = None,
) -> None:
    meta, spec = body["metadata"], body["spec"]
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation")
    default_model = config.default_model_spec
    errors = spec_errors(spec, config.gateway_url, default_model)
    if errors:
        await _invalid(client, body, "; ".join(errors), logger)
        return

    schedule = spec.get("schedule")
    ready: tuple[bool, Reason, str] = (True, Reason.RECONCILED, "")
    fresh = _schedule_state(body)
    schedule_ref = await _reconcile_cronjob(client, config, body, fresh is not None)
    cloud_ref, failure = await _reconcile_cloud_job(client, config, scheduler, body, logger)
    if failure is not None:
        ready = (False, failure.reason, failure.message)
    schedule_ref = cloud_ref or schedule_ref
    next_time, upcoming = None, None
    if schedule and not schedule.get("suspend") and ready[0]:
        next_time = rfc3339(next_run(schedule["cron"], schedule.get("timeZone", "UTC")))
        upcoming = upcoming_runs(schedule, f"{namespace}/{name}", dt.datetime.now(dt.UTC))
    conditions = set_condition(
        (body.get("status") or {}).get("conditions"),
        ConditionType.READY,
        ready[0],
        ready[1],
        ready[2],
        generation,
    )
    patch = AgentStatus(
        observed_generation=generation,
        conditions=_resumed(conditions, schedule, generation),
        next_run_time=next_time,
        upcoming_runs=upcoming,
        schedule_ref=schedule_ref,
        model=model_label(spec, default_model),
    )
    if fresh is not None:
        patch.schedule_state = ScheduleState.model_validate(fresh)
    if kube.changes(body.get("status") or {}, patch.patch()):  # a restart's resume writes nothing new
        await kube.patch_status(client, kube.Agent, name, namespace, patch)
    await reconcile_claim(client, config, body, logger)
    state.dirty_agents.add((namespace, name))
    if failure is not None:
        logger.warning("agent %s: %s", name, failure.message)
        if failure.retry_seconds is not None:
            raise kopf.TemporaryError(failure.message, delay=failure.retry_seconds)


async def _reconcile_cronjob(
    client: AsyncClient, config: Settings, body: dict[str, Any], fresh: bool
) -> str | None:
    """Keep the CronJob as the spec says (or delete it); its status.scheduleRef, or None."""
    meta, schedule = body["metadata"], body["spec"].get("schedule")
    cron_name = cronjob_name(meta["name"], meta["uid"])
    if not uses_cronjob(body["spec"]):
        await kube.delete_quietly(client, kube.CronJob, cron_name, meta["namespace"])
        return None
    old = ((body.get("status") or {}).get("scheduleState") or {}).get("signature")
    if fresh and schedule_changed(old, schedule):
        # Made anew, without a lastScheduleTime: the edit or resume never fires a 'missed' run.
        await kube.delete_quietly(client, kube.CronJob, cron_name, meta["namespace"])
    await kube.apply(client, build_cronjob(body, config))
    return f"CronJob/{cron_name}"


def _schedule_state(body: dict[str, Any]) -> kinds.ScheduleState | None:
    """A fresh status.scheduleState when the schedule is new, edited or resumed; None if unchanged
    (or no schedule: the old state stays, harmless, until a schedule comes back and replaces it)."""
    schedule = body["spec"].get("schedule")
    current = (body.get("status") or {}).get("scheduleState")
    if not schedule or (current and current.get("signature") == signature(schedule)):
        return None
    return fresh_state(schedule, current, dt.datetime.now(dt.UTC))


def _resumed(
    conditions: list[kinds.Condition], schedule: kinds.Schedule | None, generation: int | None
) -> list[kinds.Condition]:
    """SchedulePaused goes False once the user sets spec.schedule.suspend false again."""
    paused = any(c["type"] == ConditionType.SCHEDULE_PAUSED and c["status"] == "True" for c in conditions)
    if not paused or (schedule and schedule.get("suspend")):
        return conditions
    message = "the schedule was resumed (spec.schedule.suspend false)"
    return set_condition(
        conditions, ConditionType.SCHEDULE_PAUSED, False, Reason.SCHEDULE_RESUMED, message, generation
    )


async def _invalid(client: AsyncClient, body: dict[str, Any], message: str, logger: Logger) -> None:
    """Ready=False (InvalidSpec): no schedule runs, no model shown."""
    meta = body["metadata"]
    generation = meta.get("generation")
    logger.warning("agent %s is invalid: %s", meta["name"], message)
    conditions = (body.get("status") or {}).get("conditions")
    ready = set_condition(conditions, ConditionType.READY, False, Reason.INVALID_SPEC, message, generation)
    patch = AgentStatus(
        observed_generation=generation, conditions=ready, next_run_time=None, upcoming_runs=None, model=None
    )
    await kube.patch_status(client, kube.Agent, meta["name"], meta["namespace"], patch)


async def _reconcile_cloud_job(
    client: AsyncClient,
    config: Settings,
    scheduler: ScheduleBackend | None,
    body: dict[str, Any],
    logger: Logger,
) -> tuple[str | None, BackendError | None]:
    """Keep the Agent's Cloud Scheduler job as its spec says, or delete one it no longer uses.

    Returns the job name for status.scheduleRef (None: no job) and the failure, if any. While a job
    may exist, its name stays in status.scheduleRef: that keeps the finalizer on (needs_cloud_cleanup).
    """
    meta, spec = body["metadata"], body["spec"]
    recorded = (body.get("status") or {}).get("scheduleRef")
    recorded = str(recorded) if is_cloud_ref(recorded) else None
    try:
        if not uses_cloud_scheduler(spec):
            if recorded:  # moved to CronJob, or no schedule any more
                await _delete_cloud_job(config, scheduler, recorded, logger)
            return None, None
        if scheduler is None:
            raise not_configured(config)
        want = scheduler.ref(body)
        if recorded and recorded != want:  # e.g. another project or location configured
            await _delete_cloud_job(config, scheduler, recorded, logger)
        if recorded != want:
            # Intent first: a crash right after the create still leaves the name for the finalizer.
            patch = AgentStatus(schedule_ref=want)
            await kube.patch_status(client, kube.Agent, meta["name"], meta["namespace"], patch)
            recorded = want
        return await scheduler.ensure(body), None
    except BackendError as exc:
        return recorded, exc


async def _delete_cloud_job(
    config: Settings, scheduler: ScheduleBackend | None, ref: str, logger: Logger
) -> None:
    if scheduler is None:
        error = not_configured(config)
        raise BackendError(
            error.reason,
            f"cannot delete Cloud Scheduler job {ref}: {error.message}; or remove the finalizer "
            "to leave the job behind",
            retry_seconds=60,
        )
    if await scheduler.delete(ref):
        logger.info("deleted Cloud Scheduler job %s", ref)


async def delete_agent_schedule(
    config: Settings, scheduler: ScheduleBackend | None, body: dict[str, Any], logger: Logger
) -> None:
    """Before an Agent goes (finalizer): delete its Cloud Scheduler job, recorded or computed."""
    ref = (body.get("status") or {}).get("scheduleRef")
    refs = {str(ref)} if is_cloud_ref(ref) else set()
    if scheduler is not None and uses_cloud_scheduler(body.get("spec") or {}):
        refs.add(scheduler.ref(body))
    try:
        for each in sorted(refs):
            await _delete_cloud_job(config, scheduler, each, logger)
    except BackendError as exc:
        raise kopf.TemporaryError(exc.message, delay=exc.retry_seconds or 60) from exc


async def refresh_agent(client: AsyncClient, state: State, namespace: str, name: str, logger: Logger) -> None:
    """Totals, last run, next run, adoption and history pruning for one Agent."""
    agent = await kube.get_or_none(client, kube.Agent, name, namespace)
    if agent is None:
        return
    executions = state.executions_of(namespace, name)
    if await adopt(client, state, namespace, agent, executions):
        state.dirty_agents.add((namespace, name))  # the rest once starts are quiet
    status = agent.get("status") or {}
    archived = Archived.model_validate(status.get("archived") or {})
    pruned = to_prune(executions, HistoryLimits.model_validate(agent["spec"].get("historyLimits") or {}))
    if len(pruned) > PRUNE_BATCH:  # the rest next round: a retried round's names stay in archived.names
        pruned = pruned[:PRUNE_BATCH]
        state.dirty_agents.add((namespace, name))
    if pruned:
        archived = archive(archived, pruned)
    # Each Execution counts once: in archived (pruned, maybe not deleted yet: a crash in between, or
    # its deletion not seen yet) or live, never both.
    counted = set(archived.names)
    live = [e for e in executions if e["metadata"]["name"] not in counted]
    patch = summarize(live, archived)
    if pruned:
        patch.archived = archived
    schedule = agent["spec"].get("schedule")
    if schedule and not schedule.get("suspend") and status.get("nextRunTime"):
        patch.next_run_time = rfc3339(next_run(schedule["cron"], schedule.get("timeZone", "UTC")))
    step = await _schedule_refresh(client, agent, live, patch, logger)
    scheduled = [e for e in live if e["spec"].get("trigger") == Trigger.SCHEDULE]
    if scheduled:
        patch.last_schedule_time = max(e["metadata"]["creationTimestamp"] for e in scheduled)
    if kube.changes(status, patch.patch()):
        try:
            # Archive first, under the Agent's resourceVersion; then delete. A crash in between
            # re-runs this with the names already archived (nothing to write): it only deletes.
            rv = agent["metadata"]["resourceVersion"]
            await kube.patch_status(client, kube.Agent, name, namespace, patch, resource_version=rv)
        except ApiError as exc:
            if exc.status.code == 409:
                raise RuntimeError("agent changed during refresh; retrying") from exc
            raise
    for ex in pruned:
        if await kube.delete_quietly(client, kube.Execution, ex["metadata"]["name"], namespace):
            logger.info("pruned execution %s of agent %s (historyLimits)", ex["metadata"]["name"], name)
    await prune_journals(state, pruned, logger)
    if step is not None and step.pause:
        await _pause(client, agent, step, logger)


async def _schedule_refresh(
    client: AsyncClient,
    agent: dict[str, Any],
    executions: list[dict[str, Any]],
    patch: AgentStatus,
    logger: Logger,
) -> ScheduleStep | None:
    """Catch-up runs (created before the watermark moves past them: a retry meets 409), the
    skipped ones, upcomingRuns and the failure streak, into `patch`. None: nothing to do yet (no
    valid schedule, or reconcile has not taken up an edit yet)."""
    meta, schedule = agent["metadata"], agent["spec"].get("schedule")
    status = agent.get("status") or {}
    state = status.get("scheduleState")
    if not schedule or (not status.get("nextRunTime") and not schedule.get("suspend")):
        return None
    if not state or state.get("signature") != signature(schedule):
        return None
    name, namespace = meta["name"], meta["namespace"]
    now = dt.datetime.now(dt.UTC)
    step = with_backfill(schedule_step(schedule, f"{namespace}/{name}", state, executions, now), schedule)
    for runs, reason, what in (
        (step.create, Reason.CATCHUP_STARTED, "missed runs"),
        (step.backfill, Reason.BACKFILL_STARTED, "backfill runs"),
    ):
        if runs:
            await _create_scheduled(client, agent, runs)
            times = ", ".join(rfc3339(t) for t in runs)
            await _event(client, agent, reason, f"started {what} {times}", "Normal")
    plan = step.plan
    if plan is not None and plan.skipped and plan.first_skipped and plan.last_skipped:
        message = (
            f"skipped {plan.skipped} missed run(s) from {rfc3339(plan.first_skipped)} to "
            f"{rfc3339(plan.last_skipped)}: beyond catchupWindowSeconds or maxCatchupRuns"
        )
        logger.info("agent %s: %s", name, message)
        await _event(client, agent, Reason.CATCHUP_SKIPPED, message, "Warning")
    patch.schedule_state = ScheduleState.model_validate(step.state)
    patch.upcoming_runs = upcoming_runs(schedule, f"{namespace}/{name}", now)
    if step.pause:
        limit = schedule["pauseOnFailure"]["consecutiveFailures"]
        message = (
            f"suspended after {step.state['consecutiveFailures']} consecutive failed scheduled runs "
            f"(pauseOnFailure: {limit}); set spec.schedule.suspend false to resume"
        )
        paused = set_condition(
            status.get("conditions"),
            ConditionType.SCHEDULE_PAUSED,
            True,
            Reason.CONSECUTIVE_FAILURES,
            message,
            meta.get("generation"),
        )
        patch.conditions = [Condition.model_validate(c) for c in paused]
    return step


async def _create_scheduled(client: AsyncClient, agent: dict[str, Any], times: list[dt.datetime]) -> None:
    """Executions named after their scheduled times, oldest first, owned by the Agent already: a time
    that has one (the tick's, or ours from a retried round) meets 409 and is not run twice."""
    meta, owner = agent["metadata"], agent_owner(agent)
    for when in times:
        try:
            await client.create(
                kube.Execution.from_dict(
                    build_execution(meta["name"], meta["namespace"], when, owner, owner_of(agent))
                )
            )
        except ApiError as exc:
            if exc.status.code != 409:
                raise


async def _pause(client: AsyncClient, agent: dict[str, Any], step: ScheduleStep, logger: Logger) -> None:
    """pauseOnFailure: the condition is written first (in refresh's status patch), then suspend."""
    meta = agent["metadata"]
    body: dict[str, object] = {"spec": {"schedule": {"suspend": True}}}
    await kube.patch_merge(client, kube.Agent, meta["name"], meta["namespace"], body)
    message = f"schedule suspended after {step.state['consecutiveFailures']} consecutive failed runs"
    logger.warning("agent %s: %s", meta["name"], message)
    await _event(client, agent, Reason.CONSECUTIVE_FAILURES, message, "Warning")


async def _event(client: AsyncClient, agent: dict[str, Any], reason: Reason, message: str, kind: str) -> None:
    await kube.post_event(client, agent, reason.value, message, kind)


async def _resync(client: AsyncClient, state: State, logger: Logger) -> None:
    """The running Executions waiting to read their Jobs again, together (outcome.resync_all)."""
    keys = state.take_resyncs(RESYNC_QUIET_SECONDS, RESYNC_OLDEST_SECONDS)
    if not keys:
        return
    try:
        await resync_all(client, state, keys)
    except Exception as exc:  # the API server away: all of them again, next interval
        logger.warning("reading the Jobs of %d running executions failed: %s", len(keys), exc)
        for key in keys:
            state.resync_later(key)


async def background_loop(client: AsyncClient, config: Settings, state: State, logger: Logger) -> None:
    """The one background task: runs waiting for an approval (it may expire), the running runs' Jobs
    to read again, then stale Agent statuses. Retries are the controller's queue's."""
    while True:
        await asyncio.sleep(config.agent_refresh_seconds)
        for key in list(state.waiting_approval):  # approvals that may expire
            body = state.executions.get(key)
            if body is not None:
                try:
                    await on_execution(client, config, state, body, logger, listing=True)
                except Exception as exc:
                    logger.warning("execution %s/%s: %s", *key, exc)
        await _resync(client, state, logger)
        now = dt.datetime.now(dt.UTC)
        state.dirty_agents.update(key for key, agent in state.agents.items() if catchup_due(agent, now))
        for namespace, name in sorted(state.take_dirty()):
            try:
                await refresh_agent(client, state, namespace, name, logger)
            except Exception as exc:  # keep the loop alive; try again next interval
                logger.warning("refresh of agent %s/%s failed: %s", namespace, name, exc)
                state.dirty_agents.add((namespace, name))
