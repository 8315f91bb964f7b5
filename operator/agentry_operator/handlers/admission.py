"""Governance at the start of a run: ask the LLM gateway's admission, and mint the run token.

The gateway's client is governance.py (one per operator process, built at start-up when
AGENTRY_GATEWAY_URL is set). The question is asked once per start: never once the Job exists (a
crash after its creation, or a stale event, finds the Job and adopts it), not while an answer is
awaited, and not again before the retry the last answer asked for (the controller's queue brings
the Execution back then). Docs: docs/governance.md.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from lightkube import AsyncClient

from agentry_common.conditions import Reason
from agentry_common.models import AgentSpec, Phase, Trigger
from agentry_common.naming import token_secret_name

from .. import kube
from ..builders.follow_up import Parent
from ..builders.governance import (
    Verdict,
    admission_request,
    build_token_secret,
    decide,
    deleted_with_live_token,
)
from ..builders.job import child_labels, owner_reference
from ..governance import Governance
from ..settings import Settings
from .state import Key, Logger, State

__all__ = ["Governance", "admission", "decide_existing", "ensure_token_secret", "execution_deleted"]


async def execution_deleted(state: State, body: dict[str, Any], logger: Logger) -> None:
    """An Execution was deleted (its watch's DELETED event, with its last state): if its run had a
    Job and had not ended, tell the gateway, so that the run token still held by its pod (which the
    garbage collector is removing) admits no more calls. Best effort and without a finalizer: an
    event missed while the operator was down leaves the token to its expiry (the Job's deadline +
    600 s), and to the budgets. Never raises."""
    if state.governance is None or not deleted_with_live_token(body):
        return
    logger.info("execution %s deleted before it ended: ending its run token", body["metadata"]["name"])
    await state.governance.end(body)


async def admission(
    client: AsyncClient,
    config: Settings,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    job: str,
    logger: Logger,
) -> Verdict | None:
    """The gateway's verdict on starting this Execution now; None when it must not be asked now
    (asked recently: a retry is scheduled; or being asked), or when its Job already exists (the
    caller adopts it: a verdict with start=True and the current conditions)."""
    gov = state.governance
    if gov is None:
        raise RuntimeError("governance is on but the operator has no gateway client")
    key: Key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if key in state.admitting or state.admission_after.get(key, 0.0) > time.monotonic():
        return None
    status = body.get("status") or {}
    state.admitting.add(key)
    try:
        if await kube.get_or_none(client, kube.Job, job, key[0]) is not None:
            return decide_existing(status)
        request = admission_request(body, agent, config, dt.datetime.now(dt.UTC))
        answer = await gov.ask(request)
    finally:
        state.admitting.discard(key)
    verdict = decide(
        answer,
        status.get("conditions"),
        trigger=body["spec"].get("trigger"),
        config=config,
        generation=body["metadata"].get("generation"),
    )
    logger.info(
        "admission of execution %s (priority %s): %s",
        key[1],
        request["priority"],
        verdict.log or verdict.message,
    )
    if verdict.retry_seconds is not None:
        state.admission_after[key] = time.monotonic() + verdict.retry_seconds
        state.queue.add_after(key, verdict.retry_seconds)
    else:
        state.admission_after.pop(key, None)
    return verdict


def decide_existing(status: dict[str, Any]) -> Verdict:
    """The Job exists already (admitted before a crash): start, i.e. adopt it, without asking."""
    return Verdict(True, Phase.PENDING, Reason.ADMITTED, "", list(status.get("conditions") or []))


async def ensure_token_secret(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    job: str,
    spec: AgentSpec | None = None,
    parent: Parent | None = None,
) -> str:
    """Create the run token Secret of Job `job` before the Job (a 409 adopts the one an earlier
    attempt made for the same Execution); returns its name. A follow-up's (`parent`) also holds the
    keys its parent's journal verifies with, and its token names the parent."""
    gov = state.governance
    if gov is None:
        raise RuntimeError("governance is on but the operator has no gateway client")
    meta = body["metadata"]
    name = token_secret_name(job)
    labels = child_labels(
        agent["metadata"]["name"], meta["name"], body["spec"].get("trigger", Trigger.MANUAL)
    )
    token = gov.run_token(body, agent, spec, parent)
    parent_keys = gov.parent_keys(meta["namespace"], parent) if parent else None
    secret = build_token_secret(
        body,
        name,
        token,
        labels,
        owner_reference(body),
        gov.state_key(meta["namespace"], meta["uid"]),
        parent_keys,
    )
    await kube.create_or_adopt(client, secret)
    return name
