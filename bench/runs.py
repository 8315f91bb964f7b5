"""A run's writes, shared by the operator benchmarks: its Execution, and the Job and status patch
the operator sends for it (from its pure builders, by its hot path)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from lightkube import AsyncClient, KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.resources.core_v1 import Namespace

from agentry_operator import kube
from agentry_operator.builders.execution_status import observe, status_patch
from agentry_operator.builders.job import build_job
from agentry_operator.conditions import now_rfc3339
from agentry_operator.controller.client import TIMEOUT
from agentry_operator.controller.transport import AiohttpTransport
from agentry_operator.controller.wire import Wire
from agentry_operator.kube import Execution
from agentry_operator.settings import Settings

JOBS, EXECUTIONS = kube.raw("batch/v1", "Job"), kube.raw("agentry.dev/v1alpha1", "Execution")
Writes = Callable[[str, int, dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]

AGENT_SPEC = {
    "instructions": "x",
    "model": {"name": "m"},
    # The most the default Agent policy allows (maxHistoryLimit), which the run gate applies at start.
    "historyLimits": {"succeeded": 100, "failed": 100},
}


CONFIG = Settings()  # the operator's defaults, read once (as the operator does)


def execution_manifest(ns: str, name: str, agent: str) -> dict[str, Any]:
    return {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"agentRef": {"name": agent}},
    }


def operator_writes(ns: str, i: int, execution: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator's own Job and status patch for the run, from its pure builders (as handlers/
    execution.py sends them): the floor of this product's run, not of any operator's."""
    agent = {"metadata": {"name": "bench", "namespace": ns}, "spec": AGENT_SPEC}
    correlation_id = uuid.uuid4().hex
    job = build_job(execution, agent, correlation_id, CONFIG)
    generation, name = execution["metadata"].get("generation"), job["metadata"]["name"]
    status = status_patch({}, observe(None, []), generation, now_rfc3339(), name, correlation_id)
    return job, status.patch()


@contextlib.asynccontextmanager
async def wire_for(config: KubeConfig, concurrency: int) -> AsyncIterator[Wire]:
    """The operator's hot path (agentry_operator/controller/wire.py: aiohttp, no models) to the kubeconfig's
    server, `concurrency` requests at once."""
    single = config.get()
    if single is None or single.user is None:
        raise SystemExit("the kubeconfig has no current context with a user")
    verify = verify_cluster(single.cluster, single.user, single.abs_file)
    sender = AiohttpTransport(verify, limit=concurrency)
    client = AsyncClient(config, field_manager="bench", transport=sender)
    try:
        await client.get(Namespace, "default")  # one request by lightkube: the transport has its auth
        yield Wire(single.cluster.server, sender, "bench", TIMEOUT, asyncio.Semaphore(concurrency))
    finally:
        await client.close()


async def start_run(wire: Wire, i: int, execution: dict[str, Any], writes: Writes) -> None:
    """Run `i`'s Job and status patch (from `writes`), sent by `wire`."""
    meta = execution["metadata"]
    job, status = writes(meta["namespace"], i, execution)
    await wire.create(JOBS, job)
    await wire.patch_status(Execution, meta["name"], meta["namespace"], {"status": status})
