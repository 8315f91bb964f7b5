"""WorkflowRuns: the I/O around the pure planner (workflows/). Docs: docs/workflows.md.

A run is reconciled on its own watch events, on every event of an Execution carrying its
`agentry.dev/workflow-run` label (a step's phase change wakes its run at once), and at the time its
plan asks for (a retry's backoff, a deadline): one in-memory timer per run, re-armed by each
reconcile, so after a restart the initial listing re-arms them. Reconciles of one run are serialised;
each reads the run, its Workflow and its step Executions afresh from the API server, so a crash or a
reconcile run twice only ever re-creates an Execution of the same deterministic name (409: adopted).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any

import kopf
from lightkube import AsyncClient

from agentry_common import constants as c
from agentry_common import workflows as w

from .. import kube
from ..builders.refusal import Action
from ..burst import BURST
from ..context import context
from ..workflows import graph, planner, template
from ..workflows.resources import Workflow, WorkflowRun
from ..workflows.status import build_status, failed_status
from ..workflows.step import Attempt, attempts_from, build_execution, parse_time, step_fields

Logger = logging.Logger | logging.LoggerAdapter[Any]
Key = tuple[str, str]
log = logging.getLogger("agentry.operator.workflows")
RETRY_SECONDS = 10.0  # after a reconcile that raised
MEMO_KEY = "agentry-workflows"
ENDED = {p.value for p in w.RunPhase if p.terminal}


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
    status = failed_status(reason, message, run.get("status") or {}, dt.datetime.now(dt.UTC))
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
    spec, status = workflow.get("spec") or {}, run.get("status") or {}
    now = dt.datetime.now(dt.UTC)
    attempts = attempts_from(await _step_executions(client, *key), run["metadata"]["uid"])
    created = parse_time(run["metadata"].get("creationTimestamp")) or now
    ended = planner.ended_steps(status.get("steps") or [])
    plan = planner.plan(spec, created, attempts, now, ended, bool(run["spec"].get("cancel")))
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
    if kube.changes(status, new):
        await kube.patch_status(client, WorkflowRun, key[1], key[0], new)
    return plan.wake


async def _record_last_run(
    client: AsyncClient, workflow: dict[str, Any], run: dict[str, Any], status: dict[str, Any]
) -> None:
    """The Workflow's status.lastRun, unless a run that ended later is there already."""
    last = (workflow.get("status") or {}).get("lastRun") or {}
    if str(last.get("completionTime") or "") > status["completionTime"]:
        return
    entry = {
        "name": run["metadata"]["name"],
        "phase": status["phase"],
        "completionTime": status["completionTime"],
        "costUSD": status["totals"]["costUSD"],
    }
    meta = workflow["metadata"]
    await kube.patch_status(client, Workflow, meta["name"], meta["namespace"], {"lastRun": entry})


Act = Callable[[AsyncClient, Key, Logger], Awaitable[dt.datetime | None]]


class Runs:
    """Serialises each object's reconciles (`act`: a run's by default; a schedule's tick in
    workflow_schedule.py) and wakes it at the time the last one asked for. One per operator, put in
    the operator-wide memo at start-up (kopf gives each object a shallow copy of it, so one made
    later in a handler's memo would not be shared)."""

    def __init__(
        self, act: Act = reconcile, what: str = "workflow run", slack: float = 0.2, gated: bool = True
    ) -> None:
        self.act, self.what, self.slack, self.gated = act, what, slack, gated
        self.locks: dict[Key, asyncio.Lock] = {}
        self.timers: dict[Key, asyncio.TimerHandle] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    async def poke(self, client: AsyncClient, key: Key, logger: Logger = log) -> None:
        if self.gated:  # a run's reconcile lets a burst of fires go first (burst.py)
            await BURST.settled()
        async with self.locks.setdefault(key, asyncio.Lock()):
            try:
                wake = await self.act(client, key, logger)
            except Exception as exc:  # the API server or a refused child: look again soon
                logger.warning("%s %s/%s: %s; retrying in %.0f s", self.what, *key, exc, RETRY_SECONDS)
                wake = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=RETRY_SECONDS)
        self._arm(client, key, wake)

    def _arm(self, client: AsyncClient, key: Key, wake: dt.datetime | None) -> None:
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        if wake is not None:
            # A little after the planned second (slack): the plan's times are whole seconds.
            delay = max((wake - dt.datetime.now(dt.UTC)).total_seconds(), 0.0) + self.slack
            self.timers[key] = asyncio.get_running_loop().call_later(delay, self._spawn, client, key)

    def _spawn(self, client: AsyncClient, key: Key) -> None:
        task = asyncio.create_task(self.poke(client, key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def forget(self, key: Key) -> None:
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        self.locks.pop(key, None)


def runs_in(memo: kopf.Memo, memo_key: str) -> Runs:
    found = memo.get(memo_key)
    if not isinstance(found, Runs):
        raise RuntimeError(f"{memo_key} is not set up (start-up has not run)")
    return found


def watch_objects(
    registry: kopf.OperatorRegistry,
    plural: str,
    memo_key: str,
    runs: Callable[[], Runs],
    signature: Callable[[Any], Hashable] | None = None,
) -> None:
    """One `Runs` for the objects of `plural` (made at start-up, kept in the operator-wide memo
    under `memo_key`); each watch event of one pokes it (with `signature`, only an event whose
    signature differs from the last poked one), its deletion forgets its timer."""
    seen: dict[Key, Hashable] = {}

    async def install(memo: kopf.Memo, **_: Any) -> None:
        memo[memo_key] = runs()

    async def on_event(type: str, body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: Any) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if type == "DELETED":
            seen.pop(key, None)
            runs_in(memo, memo_key).forget(key)  # a run's step Executions go with it (owners)
            return
        if signature is not None:
            mark = signature(body)
            if type is not None and seen.get(key) == mark:  # None: the start-up listing, always
                return
            seen[key] = mark
        await runs_in(memo, memo_key).poke(context(memo).client, key, logger)

    kopf.on.startup(registry=registry, id=f"install-{plural}")(install)
    kopf.on.event(c.GROUP, c.VERSION, plural, registry=registry, id=f"poke-{plural}")(on_event)


def step_of(body: Mapping[str, Any]) -> str | None:
    """The WorkflowRun an Execution is a step of (None: not a step)."""
    return (body["metadata"].get("labels") or {}).get(w.LABEL_WORKFLOW_RUN)


async def poke_step(memo: kopf.Memo, body: Mapping[str, Any], logger: Logger) -> None:
    """A step Execution's event (any) wakes its run."""
    run = step_of(body)
    if run is not None:
        await runs_in(memo, MEMO_KEY).poke(context(memo).client, (body["metadata"]["namespace"], run), logger)


async def step_event(body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: Any) -> None:
    await poke_step(memo, body, logger)


def register(registry: kopf.OperatorRegistry, steps: bool = True) -> None:
    """The run's watch, the watch of step Executions (by label) that wakes their run (with `steps`;
    else the operator's own watch of Executions calls `poke_step`, run_events.py), and the
    Workflows' schedules (workflow_schedule.py)."""
    from . import workflow_schedule  # it builds on this module's Runs

    workflow_schedule.register(registry)
    watch_objects(registry, w.WORKFLOW_RUN_PLURAL, MEMO_KEY, Runs)
    if not steps:
        return
    kopf.on.event(
        c.GROUP,
        c.VERSION,
        c.EXECUTION_PLURAL,
        labels={w.LABEL_WORKFLOW_RUN: kopf.PRESENT},
        registry=registry,
    )(step_event)
