"""The events of the runs: Executions, and their Jobs and Pods, handed to handlers/execution.py and
handlers/outcome.py (and a workflow step's to its run). Watched by the operator itself (watch.py) for
exact namespaces or the whole cluster, alone or as the Lease's holder; by kopf with namespace patterns
or kopf's peering (see `register`)."""

from __future__ import annotations

import functools
import logging
import time
from types import TracebackType
from typing import Any

import kopf

from agentry_common import constants as c

from . import kube, watch
from .burst import BURST
from .context import OperatorContext, context
from .handlers.admission import execution_deleted
from .handlers.execution import on_execution
from .handlers.outcome import JOBS, OURS, PODS, on_job, on_pod
from .handlers.state import Logger
from .handlers.workflow import poke_step
from .handlers.workflow import register as register_workflows
from .metrics import RECONCILE_SECONDS, RECONCILES
from .session import has_patterns

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
        await execution_deleted(ctx.state, body, logger)  # a deleted run's token ends now
        ctx.state.forget((body["metadata"]["namespace"], body["metadata"]["name"]))
        return
    await BURST.settled()  # schedules' fires in flight go first (burst.py)
    with Timed("Execution"):
        item = ctx.state.seen_execution(body)
        await on_execution(ctx.client, ctx.config, ctx.state, item, logger, listing=event is None)


async def job(ctx: OperatorContext, event: str | None, body: dict[str, Any]) -> None:
    with Timed("Job"):
        await on_job(ctx.client, ctx.state, event, body)


async def pod(ctx: OperatorContext, event: str | None, body: dict[str, Any]) -> None:
    with Timed("Pod"):
        await on_pod(ctx.client, ctx.state, event, body)


# kopf's handlers, for namespace patterns.


async def execution_event(type: str, body: kopf.Body, logger: Logger, memo: kopf.Memo, **_: Any) -> None:
    await execution(context(memo), type, dict(body), logger)


async def job_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await job(context(memo), type, dict(body))


async def pod_event(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    await pod(context(memo), type, dict(body))


def _watches(
    ctx: OperatorContext, memo: kopf.Memo, client: kube.Client, scopes: list[str | None]
) -> list[watch.Watch]:
    async def on_execution_(event: str | None, body: dict[str, Any]) -> None:
        await execution(ctx, event, body, log)
        await poke_step(memo, body, log)  # a workflow's step: its run wakes

    kinds: list[tuple[Any, dict[str, Any], watch.Handler]] = [
        (kube.Execution, {}, on_execution_),
        (JOBS, OURS, functools.partial(job, ctx)),
        (PODS, OURS, functools.partial(pod, ctx)),
    ]
    return [
        watch.Watch(client, client.wire, res, labels, ns, on) for res, labels, on in kinds for ns in scopes
    ]


def register(registry: kopf.OperatorRegistry, namespaces: list[str] | None, peering: bool = False) -> None:
    """The runs' events in `registry`, from `namespaces` (None: every namespace), and the workflows'
    handlers: watched by the operator itself once its context exists (a start-up handler after
    `configure`); by kopf with patterns among the namespaces (kopf finds the namespaces that match) or
    with kopf's `peering` (kopf pauses its watches while a peer of higher priority acts)."""
    if peering or (namespaces is not None and has_patterns(namespaces)):
        kopf.on.event(c.GROUP, c.VERSION, "executions", registry=registry)(execution_event)
        kopf.on.event("batch", "v1", "jobs", labels=OURS, registry=registry)(job_event)
        kopf.on.event("", "v1", "pods", labels=OURS, registry=registry)(pod_event)
        register_workflows(registry, steps=True)
        return
    register_workflows(registry, steps=False)
    scopes: list[str | None] = list(namespaces) if namespaces else [None]

    async def watch_runs(memo: kopf.Memo, **_: Any) -> None:
        ctx = context(memo)
        client = ctx.client
        if not isinstance(client, kube.Client):  # made by kube.new_client: it has the hot path
            raise kopf.PermanentError("the operator's client has no hot path to watch with")
        ctx.watches = watch.start(_watches(ctx, memo, client, scopes))

    kopf.on.startup(registry=registry, id="watch-runs")(watch_runs)
    kopf.on.probe(registry=registry, id="runs-watched")(watching)


async def watching(memo: kopf.Memo, **_: Any) -> int:
    """The liveness probe's part: a watch of the runs that has ended (only a cancellation should end
    one) fails the probe, so that the pod is restarted rather than left deaf."""
    ended = [task.get_name() for task in context(memo).watches if task.done()]
    if ended:
        raise kopf.PermanentError(f"ended: {', '.join(ended)}")  # at once: a 500, no retries
    return len(context(memo).watches)
