"""Two-phase approval of risky actions: pause (WaitingApproval), then resume or cancel.

The runtime stops before a RED action with exit code 30 and an `approval` block in its result, and
prints its conversation state in an `approval_request` event on stdout. The operator keeps that
state in a ConfigMap (the pod and its emptyDir go away), and when `spec.approvals` holds a decision
for the pending id, it either starts a resume Job with `resume.json` (approved) or cancels the run
(denied, or not decided within `spec.approval.timeoutSeconds` of the Agent, plus the escalation's
`extraSeconds` when `onTimeout` is Escalate). With the gateway on, an approved resume is admitted
again first: hours may pass between pause and approval, and a run whose budget is gone waits (still
WaitingApproval, reason BudgetWait) or ends instead of failing at its first call.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lightkube import ApiError, AsyncClient

from agentry_common.conditions import Reason
from agentry_common.constants import RESUME_FILE
from agentry_common.models import ApprovalDecision, ApprovalSpec, ExecutionStatus, PendingApproval, Phase
from agentry_common.naming import job_name, token_secret_name
from agentry_common.statesig import SECRET_STATE_KEY, SIGNATURE_FIELD, state_verifies

from .. import kube
from ..builders import kinds
from ..builders.execution_status import Observed, observe, status_patch, terminal_job
from ..builders.governance import record_before_job
from ..builders.job import STATE_KEY, effective_spec, owner_reference
from ..conditions import now_rfc3339
from ..settings import Settings
from .admission import admission
from .resume_job import create_resume_job
from .state import Logger, State

DEFAULT_TIMEOUT_SECONDS = 3600
# The API records a timeout as a decision (with who/why) when it sees expiresAt pass; the operator
# cancels on its own only if that has not happened a little later.
EXPIRY_GRACE_SECONDS = 30

# What to write for a waiting run: phase, reason, message, and the new conditions (None: keep them).
Outcome = tuple[Phase, Reason, str, list[kinds.Condition] | None]

log = logging.getLogger("agentry.operator.approval")


def resume_name(execution: dict[str, Any], approval_id: str) -> str:
    """Name of the ConfigMap holding a paused run's state, and of the Job that resumes it."""
    meta = execution["metadata"]
    return job_name(meta["name"], f"{meta['uid']}/{approval_id}")


async def state_key(client: AsyncClient, namespace: str, pod: dict[str, Any]) -> str | None:
    """The key that signs the paused state of `pod`'s run: in its Job's run Secret (None: an
    ungoverned run, or a Secret an older operator made, whose state is taken unsigned)."""
    job = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name")
    if not job:
        return None
    secret = await kube.get_or_none(client, kube.Secret, token_secret_name(job), namespace)
    raw = ((secret or {}).get("data") or {}).get(SECRET_STATE_KEY)
    return base64.b64decode(raw).decode() if raw else None


async def read_state(client: AsyncClient, namespace: str, pod: str, key: str | None = None) -> Saved:
    """The conversation state of the last `approval_request` event in the pod's log (or None). With
    a state key, only an event whose signature verifies counts: a line some other process printed
    is counted in `Saved.forged`, never kept."""
    saved = Saved()
    try:
        async for line in client.log(pod, namespace=namespace, container="agent"):
            if '"approval_request"' not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("type") != "approval_request":
                continue
            if key is not None and not state_verifies(key, event.get("state"), event.get(SIGNATURE_FIELD)):
                saved.forged += 1
                continue
            saved.state, saved.event = event.get("state"), event
    except ApiError:
        return saved  # no log (pod gone, or no kubelet): the resume gets no state
    return saved


@dataclass
class Saved:
    state: object = None
    forged: int = 0  # approval_request lines whose signature did not verify
    event: dict[str, object] | None = None  # the approval_request event the state came from


# How much of a tool's input status.approval carries (the CRD allows a little more, for the marker).
INPUT_LIMIT = 16384


def complete_input(event: Mapping[str, object] | None) -> dict[str, str]:
    """The whole tool input an approver decides on (JSON), cut at INPUT_LIMIT bytes with a marker
    that says so: a harmless-looking prefix must not hide the rest."""
    if not event or "input" not in event:
        return {}
    text = json.dumps(event["input"], indent=2, ensure_ascii=False)
    data = text.encode()
    if len(data) <= INPUT_LIMIT:
        return {"input": text}
    cut = data[:INPUT_LIMIT].decode(errors="ignore")
    return {"input": cut, "inputTruncated": f"truncated at {INPUT_LIMIT} of {len(data)} bytes"}


def requested(event: Mapping[str, object] | None) -> dict[str, str]:
    """What the approval is about, from the runtime's own approval_request event (its signature
    verified when the run has a state key), not from the termination message, which a process in the
    pod could have written too: id, tool, risk and the summary an approver reads."""
    if not event or not event.get("approvalId"):
        return {}
    found = {
        "id": event.get("approvalId"),
        "tool": event.get("tool"),
        "risk": event.get("risk"),
        "summary": event.get("arguments") or event.get("reason"),
    }
    return {k: str(v) for k, v in found.items() if v}


async def pause(
    client: AsyncClient, state: State, body: dict[str, Any], seen: Observed, pods: list[dict[str, Any]]
) -> Observed:
    """Keep the paused run's state and complete the approval block with its deadline."""
    approval = seen.approval.patch() if seen.approval is not None else {}
    ns = body["metadata"]["namespace"]
    agent = state.agents.get((ns, body["spec"]["agentRef"]["name"])) or {}
    timeout = deadline_seconds(agent.get("spec"))
    now = dt.datetime.now(dt.UTC)
    approval.setdefault("requestedAt", now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    approval["expiresAt"] = (now + dt.timedelta(seconds=timeout)).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod = max(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "") if pods else None
    key = await state_key(client, ns, pod) if pod else None
    found = await read_state(client, ns, pod["metadata"]["name"], key) if pod else Saved()
    if found.forged:
        log.warning(
            "execution %s: %d approval_request line(s) in the pod's log did not verify (not printed by "
            "the runtime); ignored",
            body["metadata"]["name"],
            found.forged,
        )
    if found.forged and found.state is None:  # (no line at all: no log to read; resumed without state)
        return Observed(
            Phase.FAILED,
            Reason.APPROVAL_STATE_INVALID,
            f"the pod's log has {found.forged} approval request(s) whose state does not verify (not "
            "printed by the runtime) and none that does: the run cannot be resumed",
        )
    saved = found.state
    approval.update(requested(found.event))
    approval.update(complete_input(found.event))
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
    seen.approval = PendingApproval.model_validate(approval)
    return seen


def deadline_seconds(agent_spec: object) -> int:
    """How long a pause may wait for a decision: spec.approval.timeoutSeconds, and with onTimeout
    Escalate the escalation's extraSeconds on top (the API tells the escalation target at the timeout
    and records the denial at this deadline)."""
    try:
        approval = agent_spec.get("approval") if isinstance(agent_spec, dict) else None
        spec = ApprovalSpec.model_validate(approval or {})
    except ValueError:
        return DEFAULT_TIMEOUT_SECONDS
    return spec.deadline_seconds


def _expired(approval: PendingApproval) -> bool:
    if not approval.expires_at:
        return False
    deadline = dt.datetime.fromisoformat(approval.expires_at.replace("Z", "+00:00"))
    return deadline + dt.timedelta(seconds=EXPIRY_GRACE_SECONDS) <= dt.datetime.now(dt.UTC)


async def on_waiting(
    client: AsyncClient, config: Settings, state: State, body: dict[str, Any], logger: Logger
) -> Outcome | None:
    """Act on a decision or a timeout. Returns the status to write: the end of the run, or a resume
    held by the gateway's admission."""
    pending = (body.get("status") or {}).get("approval")
    if not pending:
        return None
    approval = PendingApproval.model_validate(pending)
    decisions = (ApprovalDecision.model_validate(d) for d in body["spec"].get("approvals") or [])
    decision = next((d for d in decisions if d.id == approval.id), None)
    tool = approval.tool or "the action"
    if decision is None:
        if _expired(approval):
            message = f"nobody decided on {tool} before {approval.expires_at}"
            return (Phase.CANCELLED, Reason.APPROVAL_TIMED_OUT, message, None)
        return None
    if not decision.approved:
        why = f": {decision.reason}" if decision.reason else ""
        message = f"{decision.decided_by or 'someone'} denied {tool}{why}"
        return (Phase.CANCELLED, Reason.APPROVAL_DENIED, message, None)
    return await resume(client, config, state, body, decision, logger)


def resume_document(decision: ApprovalDecision, saved: object) -> dict[str, object]:
    """resume.json: the decision (fields left out when the decider gave none: an approval through
    the API has no reason, and the runtime wants a string or nothing) and the state kept at the pause."""
    fields = {"approvalId": decision.id, **decision.model_dump(by_alias=True, exclude_none=True)}
    del fields["id"]
    doc: dict[str, object] = {"decision": fields}
    if saved is not None:
        doc["state"] = saved
    return doc


async def _write_resume_file(client: AsyncClient, name: str, ns: str, decision: ApprovalDecision) -> None:
    """resume.json in the paused run's ConfigMap."""
    cm = await kube.get_or_none(client, kube.ConfigMap, name, ns)
    saved = json.loads((cm or {}).get("data", {}).get(STATE_KEY) or "null")
    data = {RESUME_FILE: json.dumps(resume_document(decision, saved))}
    await kube.patch_merge(client, kube.ConfigMap, name, ns, {"data": data})


async def resume(
    client: AsyncClient,
    config: Settings,
    state: State,
    body: dict[str, Any],
    decision: ApprovalDecision,
    logger: Logger,
) -> Outcome | None:
    """Start the resume Job (None), unless the gateway's admission holds or ends the run (its Outcome;
    also None when it must not be asked now: its retry is scheduled)."""
    meta = body["metadata"]
    ns = meta["namespace"]
    status = body.get("status") or {}
    name = resume_name(body, decision.id)
    agent = state.agents.get((ns, body["spec"]["agentRef"]["name"]))
    if agent is None:
        agent = await kube.get_or_none(client, kube.Agent, body["spec"]["agentRef"]["name"], ns)
    if agent is None:
        raise RuntimeError("the Agent of a paused run is gone")
    run_spec = effective_spec(agent, config)  # parsed once: for the run token and the Job
    if config.governed:
        verdict = await admission(client, config, state, body, agent, name, logger)
        if verdict is None:
            return None
        if not verdict.start:
            phase = verdict.phase if verdict.phase.terminal else Phase.WAITING_APPROVAL
            return (phase, verdict.reason, verdict.message, verdict.conditions)
        if record_before_job(verdict, status.get("conditions")):
            recorded = ExecutionStatus.model_validate({"conditions": verdict.conditions})
            sent = await kube.patch_status(client, kube.Execution, meta["name"], ns, recorded)
            state.wrote_status((ns, meta["name"]), sent)
        status = {**status, "conditions": verdict.conditions}
    await _write_resume_file(client, name, ns, decision)
    job = await create_resume_job(client, config, state, body, agent, name, run_spec, resume_configmap=name)
    logger.info(
        "resuming execution %s in job %s after approval by %s", meta["name"], name, decision.decided_by
    )
    await _resumed(client, state, body, status, name, job, decision)
    return None


async def _resumed(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    status: dict[str, Any],
    name: str,
    job: Mapping[str, object] | None,
    decision: ApprovalDecision,
) -> None:
    """The status of a resumed run: its new Job (None: just created), no pending approval, reason
    Resumed."""
    meta = body["metadata"]
    # An ended Job is one adopted after a crash: its outcome comes with its pod's report (resync).
    seen = observe(None if job is None or terminal_job(job) else job, [])
    seen.reason = Reason.RESUMED
    seen.message = f"approved by {decision.decided_by or 'someone'}; resuming"
    patch = status_patch(status, seen, meta.get("generation"), now_rfc3339(), job_name=name)
    patch.approval = None  # the decision is taken
    sent = await kube.patch_status(client, kube.Execution, meta["name"], meta["namespace"], patch)
    state.wrote_status((meta["namespace"], meta["name"]), sent)
