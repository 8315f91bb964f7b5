"""WorkflowRuns: the I/O around the pure planner (workflows/). Docs: docs/workflows.md.

A run is reconciled on its own watch events, on every event of an Execution carrying its
`agentry.dev/workflow-run` label (a step's phase change wakes its run at once), and at the time its
plan asks for (a retry's backoff, a deadline): one in-memory timer per run, re-armed by each
reconcile, so after a restart the initial listing re-arms them. Reconciles of one run are serialised;
each reads the run, its Workflow and its step Executions afresh from the API server, so a crash or a
reconcile run twice only ever re-creates an Execution of the same deterministic name (409: adopted).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
from lightkube import AsyncClient

from agentry_common import workflows as w

from .. import kube
from ..builders.refusal import Action
from ..context import context
from ..workflows import graph, planner, template
from ..workflows.loop import Key, Logger, Runs, log, runs_in, watch_objects
from ..workflows.resources import Workflow, WorkflowRun
from ..workflows.status import ENDED, build_status, failed_status
from ..workflows.step import Attempt, attempts_from, build_execution, parse_time, step_fields
from . import workflow_schedule

MEMO_KEY = "agentry-workflows"


def _values(
    run: Mapping[str, Any],
    params: dict[str, str],
    plan: planner.Plan,
    attempts: Mapping[str, Sequence[Attempt]],
) -> template.Values:
    steps = {name: step_fields(view.phase.value, attempts.get(name)) for name, view in plan.steps.items()}
    return template.Values(params=params, steps=steps, run=run["metadata"]["name"])


async def _fail(client: AsyncClient, run: dict[str, Any], reason: w.RunReason, message: str) -> None:
    meta = run["metadata"]
    previous = w.WorkflowRunStatus.model_validate(run.get("status") or {})
    status = failed_status(reason, message, previous, dt.datetime.now(dt.UTC))
    await kube.patch_status(client, WorkflowRun, meta["name"], meta["namespace"], status)
    log.info("workflow run %s/%s failed: %s", meta["namespace"], meta["name"], message)


async def _step_executions(client: AsyncClient, namespace: str, run: str) -> list[dict[str, Any]]:
    found = client.list(kube.Execution, namespace=namespace, labels={w.LABEL_WORKFLOW_RUN: run})
    return [kube.to_dict(ex) async for ex in found]


async def _start(
    client: AsyncClient,
    plan: planner.Plan,
    run: dict[str, Any],
    step: Mapping[str, Any],
    number: int,
    text: str,
    logger: Logger,
) -> None:
    """Create (or adopt) one attempt's Execution. A permanent refusal (the Execution webhook, a CEL
    rule on the rendered input) fails the step: recorded as ended, the next reconcile plans on."""
    try:
        await kube.create_or_adopt(client, build_execution(run, step, number, text))
    except kube.Refused as exc:
        if exc.action != Action.FAIL:
            raise
        plan.starts.remove((step["name"], number))
        plan.steps[step["name"]] = planner.StepView(w.StepPhase.FAILED, f"refused: {exc.describe()}")
        logger.warning(
            "workflow run %s: step %s refused: %s", run["metadata"]["name"], step["name"], exc.describe()
        )
        return
    logger.info(
        "workflow run %s: step %s attempt %d created (or adopted)",
        run["metadata"]["name"],
        step["name"],
        number,
    )


async def _load(
    client: AsyncClient, key: Key
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]] | None:
    """The run, its Workflow and its parameter values; None when there is nothing to do (no run, an
    ended one, or one failed here because its Workflow is gone or invalid)."""
    run = await kube.get_or_none(client, WorkflowRun, key[1], key[0])
    if run is None or run["metadata"].get("deletionTimestamp"):
        return None
    if (run.get("status") or {}).get("phase") in ENDED:
        return None
    wf_name = run["spec"]["workflowRef"]["name"]
    workflow = await kube.get_or_none(client, Workflow, wf_name, key[0])
    if workflow is None:
        await _fail(client, run, w.RunReason.WORKFLOW_NOT_FOUND, f"no Workflow {wf_name}")
        return None
    params, problems = graph.parameter_values(workflow, run["spec"].get("parameters") or {})
    problems = graph.spec_errors(workflow.get("spec") or {}) + problems
    if problems:
        await _fail(client, run, w.RunReason.INVALID_WORKFLOW, "; ".join(problems))
        return None
    return run, workflow, params


async def reconcile(client: AsyncClient, key: Key, logger: Logger) -> dt.datetime | None:
    """Bring one run forward; returns when to look again (None: only on events)."""
    loaded = await _load(client, key)
    if loaded is None:
        return None
    run, workflow, params = loaded
    spec, recorded = workflow.get("spec") or {}, run.get("status") or {}
    status, run_spec = (
        w.WorkflowRunStatus.model_validate(recorded),
        w.WorkflowRunSpec.model_validate(run["spec"]),
    )
    now = dt.datetime.now(dt.UTC)
    attempts = attempts_from(await _step_executions(client, *key), run["metadata"]["uid"])
    created = parse_time(run["metadata"].get("creationTimestamp")) or now
    ended = planner.ended_steps(status.steps)
    plan = planner.plan(spec, created, attempts, now, ended, run_spec.cancel)
    steps = {str(s["name"]): s for s in graph.steps_of(spec)}
    values = _values(run, params, plan, attempts)
    for name, number in list(plan.starts):
        text = template.render(str(steps[name].get("input") or ""), values)
        await _start(client, plan, run, steps[name], number, text, logger)
    for execution in plan.cancels:
        await kube.patch_merge(client, kube.Execution, execution, key[0], {"spec": {"cancel": True}})
        logger.info("workflow run %s: cancelled %s (deadline or spec.cancel)", key[1], execution)
    new = build_status(plan, attempts, status, int(workflow["metadata"].get("generation") or 0), now)
    if plan.phase.terminal:  # first: once the run's status says it ended, it is not reconciled again
        await _record_last_run(client, workflow, run, new)
    if kube.changes(recorded, new.patch()):
        await kube.patch_status(client, WorkflowRun, key[1], key[0], new)
    return plan.wake


async def _record_last_run(
    client: AsyncClient, workflow: dict[str, Any], run: dict[str, Any], status: w.WorkflowRunStatus
) -> None:
    """The Workflow's status.lastRun, unless a run that ended later is there already."""
    last = (workflow.get("status") or {}).get("lastRun") or {}
    ended = status.completion_time or ""
    if str(last.get("completionTime") or "") > ended:
        return
    cost = status.totals.cost_usd if status.totals is not None else "0"
    entry = w.LastRun(name=run["metadata"]["name"], phase=status.phase, completion_time=ended, cost_usd=cost)
    meta = workflow["metadata"]
    await kube.patch_status(
        client, Workflow, meta["name"], meta["namespace"], w.WorkflowStatus(last_run=entry)
    )


def step_of(body: Mapping[str, Any]) -> str | None:
    """The WorkflowRun an Execution is a step of (None: not a step)."""
    return (body["metadata"].get("labels") or {}).get(w.LABEL_WORKFLOW_RUN)


async def poke_step(memo: kopf.Memo, body: Mapping[str, Any], logger: Logger) -> None:
    """A step Execution's event (any) wakes its run."""
    run = step_of(body)
    if run is not None:
        await runs_in(memo, MEMO_KEY).poke(context(memo).client, (body["metadata"]["namespace"], run), logger)


def register(registry: kopf.OperatorRegistry) -> None:
    """The run's watch and the Workflows' schedules (workflow_schedule.py); a step Execution's events
    come from the operator's own watch of Executions, which calls `poke_step` (run_events.py)."""
    workflow_schedule.register(registry)
    watch_objects(registry, w.WORKFLOW_RUN_PLURAL, MEMO_KEY, functools.partial(Runs, reconcile))
