"""Adoption: an Execution created without its Agent's label or owner reference (kubectl, the CronJob
tick pod, a workflow step) gets them from its Agent's refresh.

Adoption is bookkeeping (`kubectl get executions -l agentry.dev/agent=x`, garbage collection with
the Agent); nothing the operator or the API decides reads it. So it yields to starting runs: while
runs are starting it waits until starts have been quiet for ADOPT_QUIET_SECONDS, or until the oldest
Execution waiting for it is ADOPT_OLDEST_SECONDS old, and then patches them, oldest first, up to
ADOPT_BATCH per refresh (about one a second) and a few at a time: ten thousand Executions taken on at
once are adopted over a couple of minutes in the background, not in one burst that delays new
starts. A thousand runs created together get their Jobs first and their adoption after, instead of a
fourth write per run competing with the Job creates (bench: `python -m bench`).

Operator-made Executions whose creator knows the Agent (the Operator-backend timers, catch-up and
backfill) carry both at creation (`agent_owner`, given to `tick.build_execution`) and need no patch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from lightkube import ApiError, AsyncClient

from agentry_common import constants as c

from .. import kube
from ..builders.job import owner_reference
from ..builders.kinds import OwnerReference
from .state import State

ADOPT_QUIET_SECONDS = 1.0
ADOPT_OLDEST_SECONDS = 30.0
ADOPT_BATCH = 100  # patches per refresh of an Agent (about one a second): the rest next round
ADOPT_CONCURRENCY = 4  # patches in flight


def agent_owner(agent: Mapping[str, Any]) -> OwnerReference:
    """The owner reference an Execution of `agent` carries (not its controller: a workflow run may be)."""
    body = {"apiVersion": c.API_VERSION, "kind": c.AGENT_KIND, "metadata": agent["metadata"]}
    return owner_reference(body, controller=False)


def adopt_patch(body: Mapping[str, Any], agent: Mapping[str, Any]) -> dict[str, object] | None:
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
            "ownerReferences": [*owners, agent_owner(agent)],
        }
    }


def _age_seconds(body: Mapping[str, Any], now: dt.datetime) -> float:
    created = body["metadata"].get("creationTimestamp")
    if not created:
        return 0.0
    return (now - dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))).total_seconds()


def due(
    executions: list[dict[str, Any]],
    agent: Mapping[str, Any],
    quiet_for: float,
    now: dt.datetime,
) -> tuple[list[tuple[str, dict[str, object]]], bool]:
    """The (name, patch) pairs to write now, and whether some wait (their Agent's refresh comes back).
    Starts quiet for ADOPT_QUIET_SECONDS, or one waiting ADOPT_OLDEST_SECONDS: up to ADOPT_BATCH of
    them, oldest first."""
    pending = [
        (ex, patch)
        for ex in executions
        if not ex["metadata"].get("deletionTimestamp") and (patch := adopt_patch(ex, agent)) is not None
    ]
    if not pending:
        return [], False
    pending.sort(key=lambda item: str(item[0]["metadata"].get("creationTimestamp") or ""))
    if quiet_for < ADOPT_QUIET_SECONDS and _age_seconds(pending[0][0], now) < ADOPT_OLDEST_SECONDS:
        return [], True
    batch = [(ex["metadata"]["name"], patch) for ex, patch in pending[:ADOPT_BATCH]]
    return batch, len(pending) > ADOPT_BATCH


async def adopt(
    client: AsyncClient,
    state: State,
    namespace: str,
    agent: Mapping[str, Any],
    executions: list[dict[str, Any]],
) -> bool:
    """Adopt the Executions of `agent` that are due; True if some were left for a later refresh."""
    now = dt.datetime.now(dt.UTC)
    patches, waiting = due(executions, agent, time.monotonic() - state.last_start, now)
    gate = asyncio.Semaphore(ADOPT_CONCURRENCY)

    async def one(name: str, patch: dict[str, object]) -> None:
        async with gate:
            try:
                await kube.patch_merge(client, kube.Execution, name, namespace, patch)
            except ApiError as exc:
                if exc.status.code != 404:  # deleted meanwhile: nothing to adopt
                    raise

    await asyncio.gather(*(one(name, patch) for name, patch in patches))
    return waiting
