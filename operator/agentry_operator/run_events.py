"""The events of the runs: Executions, and their Jobs and Pods, from the informer (controller/informer.py)
to handlers/execution.py and handlers/outcome.py (and a workflow step's to its run); the Executions'
work queue (controller/queue.py) bound to `handlers.execution.reconcile`.

The namespaces are exact names, every namespace, or patterns: with patterns the operator watches the
Namespaces and gives each matching one its watches (controller/namespaces.py). Every mode, alone or
as the Lease's holder, watches this way.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from types import TracebackType
from typing import Any

import kopf

from agentry_common import constants as c
from agentry_common import pool as p

from . import kube
from .burst import BURST
from .context import OperatorContext, context
from .controller import informer
from .controller.namespaces import Namespaces, has_patterns
from .handlers.admission import execution_deleted
from .handlers.execution import on_execution, reconcile
from .handlers.outcome import JOB_LABEL, JOBS, OURS, PODS, on_job, on_pod
from .handlers.state import Key, Logger
from .handlers.workflow import poke_step
from .handlers.workflow import register as register_workflows
from .metrics import RECONCILE_SECONDS, RECONCILES

log = logging.getLogger("agentry.operator")


class Timed:
    """A reconcile's duration and outcome in the operator's metrics, by kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        RECONCILE_SECONDS.labels(self.kind).observe(time.perf_counter() - self.t0)
        RECONCILES.labels(self.kind, "error" if exc_type else "ok").inc()


async def execution(ctx: OperatorContext, event: str | None, body: dict[str, Any], logger: Logger) -> None:
    """An Execution's event (None: listed, after a start or a restart)."""
    if event == "DELETED":
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if informer.is_tombstone(body):  # gone while no watch was open: its last state is the cache's
            body = ctx.state.executions.get(key) or body
        await execution_deleted(ctx.state, body, logger)  # a deleted run's token ends now
        ctx.state.forget(key)
        return
    await BURST.settled()  # schedules' fires in flight go first (burst.py)
    item = ctx.state.seen_execution(body)
    await on_execution(ctx.client, ctx.config, ctx.state, item, logger, listing=event is None)


async def reconcile_execution(ctx: OperatorContext, key: Key, again: bool) -> None:
    """The queue's turn of one Execution."""
    with Timed("Execution"):
        await reconcile(ctx.client, ctx.config, ctx.state, key, again)


async def job(ctx: OperatorContext, event: str | None, body: dict[str, Any]) -> None:
    with Timed("Job"):
        await on_job(ctx.client, ctx.state, event, body)


async def pod(ctx: OperatorContext, event: str | None, body: dict[str, Any]) -> None:
    with Timed("Pod"):
        if ctx.state.pools is not None:
            ctx.state.pools.on_pod(event, body)  # a warm pod ready, claimed or gone
        await on_pod(ctx.client, ctx.state, event, body)


# What a tombstone of a Job or Pod gone unseen carries (informer.py): the run a Job was (on_job), the
# pool a warm pod was ready in (Pools.on_pod). An Execution's is the State's copy.
JOB_KEEP: tuple[informer.Field, ...] = (("annotations", c.ANNOTATION_EXECUTION),)
POD_KEEP: tuple[informer.Field, ...] = (("labels", p.LABEL_POOL), ("labels", JOB_LABEL))


def watches(
    ctx: OperatorContext, memo: kopf.Memo, client: kube.Client, namespace: str | None
) -> list[informer.Watch]:
    """The runs' watches in `namespace` (None: every namespace)."""

    async def on_execution_(event: str | None, body: dict[str, Any]) -> None:
        await execution(ctx, event, body, log)
        await poke_step(memo, body, log)  # a workflow's step: its run wakes

    listed = functools.partial(ctx.state.listed.add, namespace)  # the Agents' refresh waits for it
    on_job_, on_pod_ = functools.partial(job, ctx), functools.partial(pod, ctx)
    return [
        informer.Watch(client, client.wire, kube.Execution, {}, namespace, on_execution_, listed),
        informer.Watch(client, client.wire, JOBS, OURS, namespace, on_job_, keep=JOB_KEEP),
        informer.Watch(client, client.wire, PODS, OURS, namespace, on_pod_, keep=POD_KEEP),
    ]


def register(registry: kopf.OperatorRegistry, namespaces: list[str] | None) -> None:
    """The runs' events in `registry`, from `namespaces` (None: every namespace; names or patterns), and
    the workflows' handlers: watched once the operator's context exists (a start-up handler after
    `configure`); the liveness probe fails when a watch has ended."""
    register_workflows(registry)

    async def watch_runs(memo: kopf.Memo, **_: object) -> None:
        ctx = context(memo)
        client = ctx.client
        if not isinstance(client, kube.Client):  # made by kube.new_client: it has the hot path
            raise kopf.PermanentError("the operator's client has no hot path to watch with")
        ctx.state.queue.run(functools.partial(reconcile_execution, ctx))
        pools = [asyncio.create_task(ctx.state.pools.run(), name="pools")] if ctx.state.pools else []
        if namespaces and has_patterns(namespaces):
            ctx.namespaces = Namespaces(
                client, client.wire, list(namespaces), functools.partial(watches, ctx, memo, client)
            )
            ctx.watches = [*informer.start([ctx.namespaces.watch()]), *pools]
            return
        scopes: list[str | None] = list(namespaces) if namespaces else [None]
        ctx.watches = [*informer.start([w for ns in scopes for w in watches(ctx, memo, client, ns)]), *pools]

    kopf.on.startup(registry=registry, id="watch-runs")(watch_runs)
    kopf.on.probe(registry=registry, id="runs-watched")(watching)


def _tasks(ctx: OperatorContext) -> list[asyncio.Task[None]]:
    return [*ctx.watches, *(ctx.namespaces.tasks() if ctx.namespaces is not None else [])]


async def watching(memo: kopf.Memo, **_: object) -> int:
    """The liveness probe's part: a watch of the runs that has ended (only a cancellation should end
    one) fails the probe, so that the pod is restarted rather than left deaf."""
    tasks = _tasks(context(memo))
    ended = [task.get_name() for task in tasks if task.done()]
    if ended:
        raise kopf.PermanentError(f"ended: {', '.join(ended)}")  # at once: a 500, no retries
    return len(tasks)
