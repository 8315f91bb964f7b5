"""Workflow schedules: the I/O around workflows/schedule.py. Docs: docs/workflows.md.

The operator fires a Workflow's times itself (no CronJob): one in-memory timer per scheduled
Workflow, armed by each tick for its next fire time (at most LOOK_AGAIN away) and poked by every
watch event of the Workflow (an edit, a run's end recorded in status.lastRun). After a restart the
initial listing ticks every Workflow, which re-arms the timers and catches up. Each tick reads the
Workflow and its runs afresh, creates the runs of the due times under deterministic names (a 409 is
a time already started: by an interrupted tick, a repeated one, or another replica), and only then
moves the watermark, under the Workflow's resourceVersion. Every tick also deletes finished runs
beyond the Workflow's historyLimits (scheduled or not).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import kopf
from lightkube import ApiError, AsyncClient
from lightkube.types import CascadeType

from agentry_common import constants as c
from agentry_common import workflows as w
from agentry_common.conditions import ConditionType, Reason
from agentry_common.models import Condition

from .. import kube
from ..builders.kinds import Schedule
from ..burst import BURST
from ..conditions import set_condition
from ..schedule import backfill_error, cron_error, rfc3339, timezone_error, upcoming_runs
from ..workflows import schedule as sched
from ..workflows.loop import Key, Logger, Runs, runs_in, watch_objects
from ..workflows.resources import Workflow, WorkflowRun
from ..workflows.status import ENDED

MEMO_KEY = "agentry-workflow-schedules"
RUN_WORKFLOW_FIELD = "spec.workflowRef.name"


def schedule_errors(schedule: Schedule | None) -> list[str]:
    """What CEL cannot check of spec.schedule: the cron and the IANA zone (named by field)."""
    if not schedule:
        return []
    found = [
        cron_error(str(schedule.get("cron") or "")),
        timezone_error(str(schedule.get("timeZone") or "UTC")),
    ]
    if not any(found):  # the range's times need a valid cron and zone
        found.append(backfill_error(schedule))
    return [e for e in found if e]


async def _runs_of(client: AsyncClient, namespace: str, workflow: str) -> list[dict[str, Any]]:
    """The Workflow's runs, scheduled or not (a field selector: the CRD's selectableFields)."""
    listing = client.list(WorkflowRun, namespace=namespace, fields={RUN_WORKFLOW_FIELD: workflow})
    found = [kube.to_dict(r) async for r in listing]
    return [r for r in found if (r.get("spec") or {}).get("workflowRef", {}).get("name") == workflow]


def tick_signature(body: Mapping[str, Any]) -> tuple[object, ...]:
    """What makes a Workflow's watch event worth a tick: an edit (generation) or a run that ended
    (status.lastRun, written by the run controller). The tick's own status write changes neither, so
    it does not tick the Workflow again (each fire cost three ticks before)."""
    status = body.get("status") or {}
    return (body["metadata"].get("generation"), repr(status.get("lastRun")))


async def _prune(
    client: AsyncClient, key: Key, wf: dict[str, Any], runs: list[dict[str, Any]], logger: Logger
) -> list[dict[str, Any]]:
    """Delete finished runs beyond spec.historyLimits; the rest. Their step Executions are orphaned,
    not deleted: they then go by their Agents' historyLimits, which archive them into the Agents'
    totals (a deleted Execution would drop out of those totals)."""
    limits = wf["spec"].get("historyLimits") or {}
    gone = set(sched.runs_to_prune(runs, limits, (wf.get("status") or {}).get("lastRun")))
    for name in gone:
        try:
            await client.delete(WorkflowRun, name, namespace=key[0], cascade=CascadeType.ORPHAN)
        except ApiError as exc:
            if exc.status.code != 404:
                raise
        logger.info("workflow %s: deleted run %s (historyLimits)", key[1], name)
    return [r for r in runs if r["metadata"]["name"] not in gone]


async def _create(client: AsyncClient, manifest: dict[str, Any]) -> bool:
    """False when the run exists already (this fire time was started before)."""
    try:
        await kube.create(client, manifest)
    except ApiError as exc:
        if exc.status.code != 409:
            raise
        return False
    return True


def _status(
    wf: dict[str, Any], step: sched.Tick, runs: list[dict[str, Any]], now: dt.datetime
) -> w.WorkflowStatus:
    meta, schedule = wf["metadata"], wf["spec"]["schedule"]
    key = f"{meta['namespace']}/{meta['name']}"
    status = w.WorkflowStatus(
        schedule_state=w.WorkflowScheduleState.model_validate(step.state),
        upcoming_runs=None if step.pause else upcoming_runs(schedule, key, now) or None,
        last_schedule_time=sched.last_schedule_time(runs, step.start),
    )
    old = (wf.get("status") or {}).get("conditions")
    paused = any(x["type"] == ConditionType.SCHEDULE_PAUSED and x["status"] == "True" for x in old or [])
    if step.pause:
        limit = schedule["pauseOnFailure"]["consecutiveFailures"]
        message = (
            f"suspended after {step.state['consecutiveFailures']} consecutive failed scheduled runs "
            f"(pauseOnFailure: {limit}); set spec.schedule.suspend false to resume"
        )
        status.conditions = _conditions(
            set_condition(
                old,
                ConditionType.SCHEDULE_PAUSED,
                True,
                Reason.CONSECUTIVE_FAILURES,
                message,
                meta.get("generation"),
            )
        )
    elif paused and not schedule.get("suspend"):
        message = "the schedule was resumed (spec.schedule.suspend false)"
        status.conditions = _conditions(
            set_condition(
                old,
                ConditionType.SCHEDULE_PAUSED,
                False,
                Reason.SCHEDULE_RESUMED,
                message,
                meta.get("generation"),
            )
        )
    return status


def _conditions(found: Sequence[Mapping[str, object]]) -> list[Condition]:
    return [Condition.model_validate(c) for c in found]


async def tick(client: AsyncClient, key: Key, logger: Logger) -> sched.Tick | None:
    """One look at one Workflow's schedule: its step (wake: when to look again; None: only on events)."""
    wf = await kube.get_or_none(client, Workflow, key[1], key[0])
    schedule = (wf or {}).get("spec", {}).get("schedule")
    if wf is None or wf["metadata"].get("deletionTimestamp"):
        return None
    runs = await _prune(client, key, wf, await _runs_of(client, *key), logger)
    if not schedule:  # none, or removed: no upcoming runs to show
        if (wf.get("status") or {}).get("upcomingRuns"):
            await kube.patch_status(client, Workflow, key[1], key[0], w.WorkflowStatus(upcoming_runs=None))
        return None
    errors = schedule_errors(schedule)
    if errors:  # only with the webhook off: nothing fires
        logger.warning("workflow %s/%s: %s", *key, "; ".join(errors))
        return None
    now = dt.datetime.now(dt.UTC)
    step = sched.tick(schedule, f"{key[0]}/{key[1]}", wf.get("status") or {}, runs, now)
    for name in step.cancel:  # Replace: the active runs' steps are cancelled by their reconcile
        await kube.patch_merge(client, WorkflowRun, name, key[0], {"spec": {"cancel": True}})
        logger.info("workflow %s: cancelled run %s (concurrencyPolicy Replace)", key[1], name)
    listed = {r["metadata"]["name"] for r in runs}
    for when in step.start + step.backfill:
        manifest = sched.build_run(wf, when)
        created = manifest["metadata"]["name"] not in listed and await _create(client, manifest)
        logger.info("workflow %s: run for %s %s", key[1], rfc3339(when), "created" if created else "exists")
    await _record(client, wf, step, runs, now, logger)
    if step.backfill:
        times = ", ".join(rfc3339(t) for t in step.backfill)
        await _event(client, wf, Reason.BACKFILL_STARTED, f"started backfill runs {times}", "Normal")
    if step.pause:
        await kube.patch_merge(client, Workflow, key[1], key[0], {"spec": {"schedule": {"suspend": True}}})
        message = f"schedule suspended after {step.state['consecutiveFailures']} consecutive failed runs"
        logger.warning("workflow %s: %s", key[1], message)
        await _event(client, wf, Reason.CONSECUTIVE_FAILURES, message)
    step.ahead = sched.build_run(wf, step.fire) if step.fire is not None else None
    return step


class Ahead(NamedTuple):
    due: dt.datetime  # the fire time with its jitter (the timer's wake)
    run: dict[str, Any]  # the run's manifest
    forbid: bool  # kept under concurrencyPolicy Forbid: any other new run withdraws it


class Ticks:
    """The schedule ticks of one operator (its `Runs`' act). A tick that finds its next fire time
    will start as things stand keeps that run's manifest; when the timer wakes for that time, the
    run is created first, before anything is read, so a thousand Workflows firing at once send
    their thousand creates ahead of their reads and status writes. The tick that follows finds
    the run and goes on as always (a run created twice is a 409)."""

    def __init__(self) -> None:
        self.ahead: dict[Key, Ahead] = {}

    async def __call__(self, client: AsyncClient, key: Key, logger: Logger) -> dt.datetime | None:
        kept = self.ahead.get(key)
        if kept is not None and kept.due <= dt.datetime.now(dt.UTC):  # else woken early: still ahead
            del self.ahead[key]
            async with BURST.firing():
                await _create(client, kept.run)
            await BURST.settled()  # the other fires' creates first, then this tick's reads
        step = await tick(client, key, logger)
        self.ahead.pop(key, None)
        if step is not None and step.ahead is not None and step.wake is not None:
            self.ahead[key] = Ahead(step.wake, step.ahead, step.ahead_forbid)
        return step.wake if step is not None else None

    def run_seen(self, namespace: str, workflow: str, run: str) -> None:
        """A run of the Workflow not ended (its watch event), other than the one kept: under Forbid
        the next time may no longer start, so the tick decides it at the time, reading first."""
        kept = self.ahead.get((namespace, workflow))
        if kept is not None and kept.forbid and kept.run["metadata"]["name"] != run:
            del self.ahead[(namespace, workflow)]


async def _record(
    client: AsyncClient,
    wf: dict[str, Any],
    step: sched.Tick,
    runs: list[dict[str, Any]],
    now: dt.datetime,
    logger: Logger,
) -> None:
    """The new status, under the resourceVersion read (a conflict: the next tick redoes it, and the
    runs it creates again meet 409); an Event for newly skipped times."""
    meta, current = wf["metadata"], wf.get("status") or {}
    status = _status(wf, step, runs, now)
    if not kube.changes(current, status.patch()):
        return
    rv = meta["resourceVersion"]
    await kube.patch_status(client, Workflow, meta["name"], meta["namespace"], status, resource_version=rv)
    skipped = step.state.get("lastSkipped")
    if skipped and skipped != (current.get("scheduleState") or {}).get("lastSkipped"):
        span = f"from {skipped['first']} to {skipped['last']}"
        message = f"skipped {skipped['count']} run(s) {span} ({skipped['reason']})"
        logger.info("workflow %s: %s", meta["name"], message)
        await _event(client, wf, Reason.CATCHUP_SKIPPED, message)


async def _event(
    client: AsyncClient, wf: dict[str, Any], reason: Reason, message: str, kind: str = "Warning"
) -> None:
    """An Event on the Workflow."""
    await kube.post_event(
        client, {"apiVersion": c.API_VERSION, "kind": w.WORKFLOW_KIND, **wf}, reason.value, message, kind
    )


async def workflow_gone(type: str, body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """A deleted Workflow's run kept ahead goes with it."""
    ticks = runs_in(memo, MEMO_KEY).act
    if type == "DELETED" and isinstance(ticks, Ticks):
        ticks.ahead.pop((body["metadata"]["namespace"], body["metadata"]["name"]), None)


async def run_event(body: kopf.Body, memo: kopf.Memo, **_: object) -> None:
    """Every WorkflowRun not ended withdraws its Workflow's run kept ahead, but its own."""
    if (body.get("status") or {}).get("phase") in ENDED:
        return
    ticks = runs_in(memo, MEMO_KEY).act
    if isinstance(ticks, Ticks):
        meta = body["metadata"]
        ticks.run_seen(meta["namespace"], body["spec"]["workflowRef"]["name"], meta["name"])


def register(registry: kopf.OperatorRegistry) -> None:
    # Ticks at their times, without the Runs' usual slack: the fire-ahead create waits for nothing.
    runs = lambda: Runs(Ticks(), "workflow schedule", slack=0.01, gated=False)  # noqa: E731
    watch_objects(registry, w.WORKFLOW_PLURAL, MEMO_KEY, runs, tick_signature)
    kopf.on.event(c.GROUP, c.VERSION, w.WORKFLOW_RUN_PLURAL, registry=registry, id="ahead-runs")(run_event)
    kopf.on.event(c.GROUP, c.VERSION, w.WORKFLOW_PLURAL, registry=registry, id="ahead-gone")(workflow_gone)
