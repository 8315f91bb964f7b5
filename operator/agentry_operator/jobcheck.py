"""The Job an Agent's runs would get, dry-run created when the Agent is admitted.

A spec can pass the CRD schema and the policy and still yield a Job the API server refuses (a memory
request above the limit the operator sets, a negative quantity, inputs past the annotation limit).
Without this check the person learns it at the first run (`InvalidJob`); with it, the write of the
Agent is refused (kubectl, or the API's own dry-run of the Agent) naming the field and the server's
words. The runs keep the `InvalidJob` path for what only a run brings (its Execution's input).

Only a permanent refusal (builders/refusal.Action.FAIL) refuses the Agent: a used-up quota, RBAC or
a slow API server says nothing about the spec, so the Agent is admitted and the run deals with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.codecs import from_dict
from pydantic import ValidationError

from agentry_common import constants as c
from agentry_common.naming import job_name, token_secret_name

from .builders.job import build_job
from .builders.refusal import Action, classify, describe
from .settings import Settings

log = logging.getLogger(__name__)

DRY_RUN_SECONDS = 5.0
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"  # no Execution exists yet
SAMPLE_CORRELATION_ID = "dry-run"


def sample_job(agent: Mapping[str, Any], namespace: str, config: Settings) -> dict[str, Any]:
    """The Job a manual run of `agent` (with no input of its own) would get, as build_job makes it."""
    meta = agent.get("metadata") or {}
    name = str(meta.get("name") or meta.get("generateName") or "agent")
    execution = {
        "apiVersion": c.API_VERSION,
        "kind": c.EXECUTION_KIND,
        "metadata": {"name": name, "namespace": namespace, "uid": PLACEHOLDER_UID},
        "spec": {"agentRef": {"name": name}},
    }
    body = {"metadata": {**meta, "name": name, "namespace": namespace}, "spec": dict(agent.get("spec") or {})}
    # The token Secret is named after the Job, which is named after the run.
    token_secret = token_secret_name(job_name(name, PLACEHOLDER_UID)) if config.governed else None
    return build_job(execution, body, SAMPLE_CORRELATION_ID, config, token_secret=token_secret)


async def job_errors(
    client: AsyncClient, agent: Mapping[str, Any], namespace: str, config: Settings
) -> list[str]:
    """Why the API server would refuse the Job of this Agent's runs (empty: it would not, or it
    cannot tell now). Nothing is created: the request is a server-side dry run."""
    try:
        job = sample_job(agent, namespace, config)
    except (ValidationError, ValueError, KeyError) as exc:  # the spec rules report these already
        log.debug("no sample Job for the dry run: %s", exc)
        return []
    try:
        await asyncio.wait_for(client.create(from_dict(job), dry_run=True), DRY_RUN_SECONDS)
    except ApiError as exc:
        status = exc.status.to_dict()
        if classify(exc.status.code, exc.status.message or "") != Action.FAIL:
            log.info("the Job dry run of an Agent was not conclusive: %s", exc.status.message)
            return []
        text = describe("Job", job["metadata"]["name"], status)
        return [f"spec: the Job of this agent's runs would be refused: {text}"]
    except (TimeoutError, OSError, httpx2.HTTPError) as exc:  # lightkube speaks httpx2
        log.warning("the Job dry run of an Agent did not finish (%s); admitted unchecked", exc)
    return []
