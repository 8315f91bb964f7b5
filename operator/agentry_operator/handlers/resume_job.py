"""The Job that resumes a run (after an approval's decision, or after a pod stopped at a checkpoint):
a run token of its own when the gateway governs runs, and the follow-up's parent when it still
qualifies (its journal may be read again). Named by the caller, so a re-run adopts it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import AsyncClient

from agentry_common.models import AgentSpec

from .. import kube
from ..builders.job import build_job
from ..settings import Settings
from .admission import ensure_token_secret
from .follow_up import resumed_parent
from .state import State


async def create_resume_job(
    client: AsyncClient,
    config: Settings,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    name: str,
    run_spec: AgentSpec,
    resume_configmap: str | None = None,
) -> Mapping[str, object] | None:
    """Create (or adopt) Job `name` of the run; the Job when adopted, None when created."""
    token_secret = parent = None
    if config.governed:
        parent = await resumed_parent(client, config, state, body)
        token_secret = await ensure_token_secret(client, state, body, agent, name, run_spec, parent)
    status = body.get("status") or {}
    correlation_id = status.get("correlationId") or body["metadata"]["name"]
    job = build_job(
        body,
        agent,
        correlation_id,
        config,
        name=name,
        resume_configmap=resume_configmap,
        token_secret=token_secret,
        spec=run_spec,
        parent=parent,
    )
    return await kube.create_or_adopt(client, job)
