"""Two-phase approval of risky actions: pause (WaitingApproval), then resume or cancel.

The runtime stops before a RED action with exit code 30 and an `approval` block in its result, and
prints its conversation state in an `approval_request` event on stdout. The operator keeps that
state in a ConfigMap (the pod and its emptyDir go away), and when `spec.approvals` holds a decision
for the pending id, it either starts a resume Job with `resume.json` (approved) or cancels the run
(denied, or not decided within `spec.approval.timeoutSeconds` of the Agent). With the gateway on, an
approved resume is admitted again first: hours may pass between pause and approval, and a run whose
budget is gone waits (still WaitingApproval, reason BudgetWait) or ends instead of failing at its
first call.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from lightkube import ApiError, AsyncClient

from agentry_common.conditions import Reason
from agentry_common.constants import RESUME_FILE
from agentry_common.models import Phase
from agentry_common.naming import job_name

from .. import kube
from ..builders.execution_status import Observed, observe, status_patch, terminal_job
from ..builders.governance import record_before_job
from ..builders.job import STATE_KEY, build_job, effective_spec, owner_reference
from ..conditions import now_rfc3339
from ..config import OperatorConfig
from .admission import admission, ensure_token_secret
from .state import Logger, State

DEFAULT_TIMEOUT_SECONDS = 3600
# The API records a timeout as a decision (with who/why) when it sees expiresAt pass; the operator
# cancels on its own only if that has not happened a little later.
EXPIRY_GRACE_SECONDS = 30

# What to write for a waiting run: phase, reason, message, and the new conditions (None: keep them).
Outcome = tuple[Phase, Reason, str, list[dict[str, Any]] | None]


def resume_name(execution: dict[str, Any], approval_id: str) -> str:
    """Name of the ConfigMap holding a paused run's state, and of the Job that resumes it."""
    meta = execution["metadata"]
    return job_name(meta["name"], f"{meta['uid']}/{approval_id}")


async def read_state(client: AsyncClient, namespace: str, pod: str) -> Any:
    """The conversation state from the last `approval_request` event in the pod's log (or None)."""
    found: Any = None
    try:
        async for line in client.log(pod, namespace=namespace, container="agent"):
            if '"approval_request"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "approval_request":
                found = event.get("state")
    except ApiError:
        return None  # no log (pod gone, or no kubelet): the resume gets no state
    return found


async def pause(
    client: AsyncClient, state: State, body: dict[str, Any], seen: Observed, pods: list[dict[str, Any]]
) -> Observed:
    """Keep the paused run's state and complete the approval block with its deadline."""
    approval = dict(seen.approval or {})
    ns = body["metadata"]["namespace"]
    agent = state.agents.get((ns, body["spec"]["agentRef"]["name"])) or {}
    timeout = int(
        (agent.get("spec") or {}).get("approval", {}).get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS
    )
    now = dt.datetime.now(dt.UTC)
    approval.setdefault("requestedAt", now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    approval["expiresAt"] = (now + dt.timedelta(seconds=timeout)).strftime("%Y-%m-%dT%H:%M:%SZ")
    approval.setdefault("summary", str(approval.get("arguments") or approval.get("reason") or ""))
    pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "") if pods else None
    saved = await read_state(client, ns, pod["metadata"]["name"]) if pod else None
    await kube.create_or_adopt(
        client,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": resume_name(body, approval["id"]),
                "namespace": ns,
                "ownerReferences": [owner_reference(body)],
            },
            "data": {STATE_KEY: json.dumps(saved)},
        },
    )
    keep = {"id", "tool", "summary", "risk", "requestedAt", "expiresAt"}
    seen.approval = {k: v for k, v in approval.items() if k in keep}
    return seen


def _expired(approval: dict[str, Any]) -> bool:
    expires = approval.get("expiresAt")
    if not expires:
        return False
    deadline = dt.datetime.fromisoformat(expires.replace("Z", "+00:00"))
    return deadline + dt.timedelta(seconds=EXPIRY_GRACE_SECONDS) <= dt.datetime.now(dt.UTC)


async def on_waiting(
    client: AsyncClient, config: OperatorConfig, state: State, body: dict[str, Any], logger: Logger
) -> Outcome | None:
    """Act on a decision or a timeout. Returns the status to write: the end of the run, or a resume
    held by the gateway's admission."""
    status = body.get("status") or {}
    approval = status.get("approval") or {}
    decision = next(
        (d for d in body["spec"].get("approvals") or [] if d.get("id") == approval.get("id")), None
    )
    if decision is None:
        if _expired(approval):
            return (
                Phase.CANCELLED,
                Reason.APPROVAL_TIMED_OUT,
                f"nobody decided on {approval.get('tool', 'the action')} before {approval['expiresAt']}",
                None,
            )
        return None
    who = decision.get("decidedBy") or "someone"
    if not decision.get("approved"):
        why = f": {decision['reason']}" if decision.get("reason") else ""
        return (
            Phase.CANCELLED,
            Reason.APPROVAL_DENIED,
            f"{who} denied {approval.get('tool', 'the action')}{why}",
            None,
        )
    return await resume(client, config, state, body, decision, logger)


async def _write_resume_file(client: AsyncClient, name: str, ns: str, decision: dict[str, Any]) -> None:
    """resume.json in the paused run's ConfigMap: the decision, and the state kept at the pause."""
    cm = await kube.get_or_none(client, kube.ConfigMap, name, ns)
    saved = json.loads((cm or {}).get("data", {}).get(STATE_KEY) or "null")
    resume_doc: dict[str, Any] = {
        "decision": {k: decision.get(k) for k in ("id", "approved", "decidedBy", "reason")}
    }
    resume_doc["decision"]["approvalId"] = resume_doc["decision"].pop("id")
    if saved is not None:
        resume_doc["state"] = saved
    await kube.patch_merge(client, kube.ConfigMap, name, ns, {"data": {RESUME_FILE: json.dumps(resume_doc)}})


async def resume(
    client: AsyncClient,
    config: OperatorConfig,
    state: State,
    body: dict[str, Any],
    decision: dict[str, Any],
    logger: Logger,
) -> Outcome | None:
    """Start the resume Job (None), unless the gateway's admission holds or ends the run (its Outcome;
    also None when it must not be asked now: its retry is scheduled)."""
    meta = body["metadata"]
    ns = meta["namespace"]
    status = body.get("status") or {}
    name = resume_name(body, decision["id"])
    agent = state.agents.get((ns, body["spec"]["agentRef"]["name"]))
    if agent is None:
        agent = await kube.get_or_none(client, kube.Agent, body["spec"]["agentRef"]["name"], ns)
    if agent is None:
        raise RuntimeError("the Agent of a paused run is gone")
    run_spec = effective_spec(agent, config)  # parsed once: for the run token and the Job
    token_secret: str | None = None
    if config.governed:
        verdict = await admission(client, config, state, body, agent, name, logger)
        if verdict is None:
            return None
        if not verdict.start:
            phase = verdict.phase if verdict.phase.terminal else Phase.WAITING_APPROVAL
            return (phase, verdict.reason, verdict.message, verdict.conditions)
        if record_before_job(verdict, status.get("conditions")):
            recorded = {"conditions": verdict.conditions}
            await kube.patch_status(client, kube.Execution, meta["name"], ns, recorded)
            state.wrote_status((ns, meta["name"]), recorded)
        status = {**status, "conditions": verdict.conditions}
        token_secret = await ensure_token_secret(client, state, body, agent, name, run_spec)
    await _write_resume_file(client, name, ns, decision)
    correlation_id = status.get("correlationId") or meta["name"]
    job = await kube.create_or_adopt(
        client,
        build_job(
            body,
            agent,
            correlation_id,
            config,
            name=name,
            resume_configmap=name,
            token_secret=token_secret,
            spec=run_spec,
        ),
    )
    logger.info(
        "resuming execution %s in job %s after approval by %s", meta["name"], name, decision.get("decidedBy")
    )
    await _resumed(client, state, body, status, name, job, decision)
    return None


async def _resumed(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    status: dict[str, Any],
    name: str,
    job: dict[str, Any],
    decision: dict[str, Any],
) -> None:
    """The status of a resumed run: its new Job, no pending approval, reason Resumed."""
    meta = body["metadata"]
    # An ended Job is one adopted after a crash: its outcome comes with its pod's report (resync).
    seen = observe(None if terminal_job(job) else job, [])
    seen.reason = Reason.RESUMED
    seen.message = f"approved by {decision.get('decidedBy') or 'someone'}; resuming"
    patch = status_patch(status, seen, meta.get("generation"), now_rfc3339())
    patch.update({"jobName": name, "approval": None})
    await kube.patch_status(client, kube.Execution, meta["name"], meta["namespace"], patch)
    state.wrote_status((meta["namespace"], meta["name"]), patch)
