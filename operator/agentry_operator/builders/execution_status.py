"""Derive an Execution's status from its Job and Pods. Pure: the reason a person reads comes from here."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict, cast

from agentry_common import outputs
from agentry_common.conditions import ConditionType, Reason
from agentry_common.exitcodes import REASONS, ExitCode
from agentry_common.models import (
    CheckpointStatus,
    ExecutionStatus,
    McpServerStatus,
    McpStatus,
    PendingApproval,
    Phase,
    Result,
    Risk,
    Usage,
)
from agentry_common.pricing import usd_string

from ..conditions import set_condition
from .checkpoint_report import checkpoint_status, reported_count
from .eviction import POD_EVICTED, storage_eviction, storage_message
from .kinds import Condition, ContainerStatus, Job, Pod

# The runtime's report (its termination message's JSON): the pod's word, every field checked on use.
Report = dict[str, Any]

# Waiting reasons of a container that will not fix themselves: the run fails at once.
IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError"}
# Kubernetes' own condition types and reasons, read from Jobs and Pods.
JOB_COMPLETE, JOB_FAILED = "Complete", "Failed"
JOB_FAILURE_TARGET, JOB_SUCCESS_CRITERIA_MET = "FailureTarget", "SuccessCriteriaMet"
JOB_DEADLINE_EXCEEDED = "DeadlineExceeded"  # a Job's activeDeadlineSeconds passed
JOB_BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
POD_RUNNING, POD_SUCCEEDED = "Running", "Succeeded"  # pod phases
POD_ENDED = frozenset({POD_SUCCEEDED, "Failed"})  # the phases a pod never leaves
POD_SCHEDULED, POD_UNSCHEDULABLE = "PodScheduled", "Unschedulable"


@dataclass
class Observed:
    """The outcome of one look at a Job and its Pods."""

    phase: Phase
    reason: Reason
    message: str
    start_time: str | None = None
    completion_time: str | None = None
    attempts: int = 0
    result: Result | None = None
    usage: Usage | None = None
    approval: PendingApproval | None = None
    mcp: McpStatus | None = None  # what the run's MCP servers offered (status.mcp)
    checkpoint: CheckpointStatus | None = None  # the run's journal, as its pod reported it
    stop_job: bool = False  # the Job cannot succeed any more: delete it so no pod lingers
    # The Job ended because its pod stopped at a checkpoint: the run goes on in a new Job (its pod
    # starts at once; the Job controller would wait out its failure back-off, 10 s and doubling).
    next_job: bool = False


def _parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def format_duration(start: str | None, end: str | None) -> str | None:
    a, b = _parse_time(start), _parse_time(end)
    if a is None or b is None:
        return None
    seconds = max(0, int((b - a).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _conditions(job: Job) -> dict[str, Condition]:
    conditions = (job.get("status") or {}).get("conditions") or []
    return {c.get("type", ""): c for c in conditions if c.get("status") == "True"}


def terminal_job(job: Mapping[str, object]) -> bool:
    """The Job has ended (its outcome is final, whatever its pods say next)."""
    ended = {JOB_COMPLETE, JOB_FAILED, JOB_FAILURE_TARGET, JOB_SUCCESS_CRITERIA_MET}
    return bool(set(_conditions(cast(Job, job))) & ended)


def _latest(pods: Sequence[Pod], succeeded: bool = False) -> Pod | None:
    """The pod whose report is the run's: the newest, or of a succeeded Job the newest that succeeded
    (an earlier attempt may have been created in the same second)."""
    if succeeded:
        pods = [p for p in pods if (p.get("status") or {}).get("phase") == POD_SUCCEEDED] or pods
    if not pods:
        return None
    return max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")


def _container(pod: Pod) -> ContainerStatus:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def parse_report(message: str | None) -> Report | None:
    """The runtime's result JSON from a termination message (None if it is not one)."""
    if not message:
        return None
    try:
        report = json.loads(message)
    except ValueError:
        return None
    return report if isinstance(report, dict) else None


def _cost(value: object) -> str:
    """A reported cost in status.usage's form (the report is the pod's word: anything else is 0)."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return "0"
    return usd_string(amount) if amount.is_finite() and 0 <= amount < 10**6 else "0"


def _usage(report: Mapping[str, object]) -> Usage | None:
    usage = report.get("usage")
    if not isinstance(usage, dict):
        return None
    inp, out = reported_count(usage.get("inputTokens")), reported_count(usage.get("outputTokens"))
    # The cached parts are within the input: no more than it, reads first.
    read = min(reported_count(usage.get("cacheReadTokens")), inp)
    written = min(reported_count(usage.get("cacheWriteTokens")), inp - read)
    result: dict[str, object] = {
        "inputTokens": inp,
        "outputTokens": out,
        "totalTokens": inp + out,
        "cacheReadTokens": read,
        "cacheWriteTokens": written,
        "costUSD": _cost(usage.get("costUSD", "0")),
    }
    if usage.get("uncachedCostUSD") is not None:
        result["uncachedCostUSD"] = _cost(usage["uncachedCostUSD"])
    for key in ("model", "turns"):
        if usage.get(key) is not None:
            result[key] = usage[key]
    return Usage.model_validate(result)


MCP_SERVERS, MCP_TOOLS, MCP_TEXT = 10, 64, 300  # bounds of status.mcp (spec.mcpServers has at most 10)
RISKS = frozenset(r.value for r in Risk)


def mcp_status(report: Mapping[str, object]) -> McpStatus | None:
    """status.mcp from the runtime's report: per server, its offered tools and their risk, or the
    error; only well-formed entries, bounded (the report is the run's, so not trusted blindly)."""
    entries = report.get("mcp")
    if not isinstance(entries, list):
        return None
    servers: list[McpServerStatus] = []
    for entry in entries[:MCP_SERVERS]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            continue
        server = McpServerStatus(name=entry["name"][:MCP_TEXT])
        tools = entry.get("tools")
        if isinstance(tools, dict):
            kept = [(str(k)[:MCP_TEXT], Risk(v)) for k, v in tools.items() if v in RISKS]
            server.tools = dict(kept[:MCP_TOOLS])
        if isinstance(entry.get("error"), str):
            server.error = entry["error"][:MCP_TEXT]
        servers.append(server)
    return McpStatus(servers=servers) if servers else None


def asked_outputs(pod: Pod | None) -> set[str]:
    """The named outputs the run was asked for: the pod's first AGENTRY_OUTPUTS, the operator's own."""
    containers = ((pod or {}).get("spec") or {}).get("containers") or [{}]
    env = containers[0].get("env") or []
    value = next((e.get("value") for e in env if e.get("name") == outputs.ENV_OUTPUTS), None)
    return {n for n in str(value or "").split(",") if n}


def _result(report: Mapping[str, object], asked: set[str]) -> Result:
    result = Result(
        summary=str(report.get("summary", ""))[:4096], truncated=bool(report.get("truncated", False))
    )
    if report.get("stopReason"):
        result.stop_reason = str(report["stopReason"])
    given = report.get("outputs")
    if isinstance(given, dict):  # only names asked for, each bounded: the report is the pod's word
        kept = outputs.bounded({str(k): str(v) for k, v in given.items() if k in asked})
        if kept:
            result.outputs = kept
    return result


APPROVAL_FIELDS = ("id", "tool", "summary", "risk", "requestedAt", "expiresAt", "input", "inputTruncated")


def pending_approval(block: Mapping[str, object]) -> PendingApproval:
    """status.approval from the approval block of the runtime's report (its fields as text; no
    summary: its arguments or reason)."""
    fields = {k: str(block[k]) for k in APPROVAL_FIELDS if block.get(k) is not None}
    fields.setdefault("summary", str(block.get("arguments") or block.get("reason") or ""))
    return PendingApproval.model_validate(fields)


def _exit(pod: Pod | None) -> tuple[int | None, Report | None]:
    if pod is None:
        return None, None
    terminated = (_container(pod).get("state") or {}).get("terminated")
    if not terminated:
        terminated = (_container(pod).get("lastState") or {}).get("terminated")
    if not terminated:
        return None, None
    return terminated.get("exitCode"), parse_report(terminated.get("message"))


def _explain_exit(code: int | None) -> tuple[Reason, str]:
    if code is None:
        return Reason.POD_FAILED, "the run's pod failed"
    if code in REASONS:
        reason, text = REASONS[code]
        return Reason(reason), f"{text} (exit code {code})"
    if code == 137:
        return (
            Reason.OOM_KILLED,
            "the run was killed (exit code 137): out of memory? raise resources.limits.memory",
        )
    return Reason.POD_FAILED, f"the run's pod exited with code {code}"


class _Seen(TypedDict, total=False):
    """What every observation of a Job carries."""

    start_time: str | None
    attempts: int
    result: Result | None
    usage: Usage | None
    mcp: McpStatus | None
    checkpoint: CheckpointStatus | None


INTERRUPTED_MESSAGE = "the run's pod stopped at a checkpoint; resuming from checkpoint in a new pod"


def interrupted(pod: Pod | None) -> bool:
    """The pod stopped at a checkpoint (ExitCode.INTERRUPTED): not an end, a new pod resumes the run."""
    return _exit(pod)[0] == ExitCode.INTERRUPTED


def observe(job_read: Mapping[str, object] | None, pods_read: Sequence[Mapping[str, object]]) -> Observed:
    """What the Job and its Pods (as read from the API server) say about the run."""
    if job_read is None:
        return Observed(Phase.PENDING, Reason.PENDING, WAITING_MESSAGE)
    job, pods = cast(Job, job_read), cast(Sequence[Pod], pods_read)
    status = job.get("status") or {}
    conds = _conditions(job)
    complete = JOB_COMPLETE in conds or JOB_SUCCESS_CRITERIA_MET in conds
    pod = _latest(pods, succeeded=complete)
    attempts = max(
        len(pods),
        int(status.get("failed", 0)) + int(status.get("succeeded", 0)) + int(status.get("active", 0)),
    )
    code, report = _exit(pod)
    base = _reported(pod, report, {"start_time": status.get("startTime"), "attempts": attempts})

    if complete:
        end = status.get("completionTime") or conds.get(JOB_COMPLETE, {}).get("lastTransitionTime")
        return _succeeded(pod, report, end, base)

    failed = conds.get(JOB_FAILED) or conds.get(JOB_FAILURE_TARGET)
    if failed:
        evicted = storage_eviction(pod)
        if evicted is not None:  # its exit code would read as a deadline or OOM (eviction.py)
            text, end = storage_message(evicted, attempts), failed.get("lastTransitionTime")
            return Observed(Phase.FAILED, Reason.STORAGE_LIMIT_EXCEEDED, text, completion_time=end, **base)
        return _failed(job, failed, code, report, attempts, base)

    if pod is not None:
        seen = _pod_state(pod, base)
        if seen is not None:
            return seen
    if any(interrupted(p) for p in pods):  # the replacement of a pod that stopped at a checkpoint
        return Observed(Phase.RUNNING, Reason.INTERRUPTED, INTERRUPTED_MESSAGE, **base)
    return Observed(Phase.PENDING, Reason.PENDING, WAITING_MESSAGE, **base)


def _reported(pod: Pod | None, report: Report | None, base: _Seen) -> _Seen:
    """`base` with what the pod's report says (result, usage, MCP servers, checkpoint)."""
    if report:
        base["result"] = _result(report, asked_outputs(pod))
        base["usage"] = _usage(report)
        base["mcp"] = mcp_status(report)
        base["checkpoint"] = checkpoint_status(report)
    return base


def _succeeded(pod: Pod | None, report: Report | None, end: str | None, base: _Seen) -> Observed:
    if report is None:  # never a silent success without the run's result and usage
        return Observed(Phase.SUCCEEDED, Reason.NO_REPORT, _no_report(pod), completion_time=end, **base)
    return Observed(
        Phase.SUCCEEDED, Reason.COMPLETED, "the agent finished its task", completion_time=end, **base
    )


# The Job controller's message when a podFailurePolicy rule on exit codes ends a Job (reason
# PodFailurePolicy): "Container agent for pod ns/p failed with exit code 75 matching FailJob rule ...".
_POLICY_EXIT = re.compile(r"failed with exit code (\d+) matching FailJob rule")


def policy_exit_code(failed: Condition) -> int | None:
    """The exit code a Job ended on by its podFailurePolicy, from its condition (its pod may be gone)."""
    if failed.get("reason") != "PodFailurePolicy":
        return None
    match = _POLICY_EXIT.search(str(failed.get("message") or ""))
    return int(match.group(1)) if match else None


def _failed(
    job: Job,
    failed: Condition,
    code: int | None,
    report: Report | None,
    attempts: int,
    base: _Seen,
) -> Observed:
    """What a failed Job says: an approval to wait for, its deadline, or why its pod failed."""
    end = failed.get("lastTransitionTime")
    if code == ExitCode.APPROVAL_REQUIRED and report and report.get("approval"):
        approval = report["approval"]
        return Observed(
            Phase.WAITING_APPROVAL,
            Reason.APPROVAL_REQUIRED,
            f"waiting for a decision on {approval.get('tool', 'an action')}: "
            f"{approval.get('summary', '')}".strip(),
            approval=pending_approval(approval),
            **base,
        )
    job_reason = failed.get("reason", "")
    if job_reason == JOB_DEADLINE_EXCEEDED:
        return Observed(
            Phase.FAILED,
            Reason.DEADLINE_EXCEEDED,
            f"the run exceeded its deadline (spec.timeoutSeconds plus a grace period: "
            f"{job['spec'].get('activeDeadlineSeconds')} s) and was stopped",
            completion_time=end,
            **base,
        )
    if code is None:  # the pod is gone (deleted): the Job's condition names the exit code it ended on
        code = policy_exit_code(failed)
    if code == ExitCode.INTERRUPTED:  # the podFailurePolicy ends the Job: a new one resumes the run
        return Observed(Phase.RUNNING, Reason.INTERRUPTED, INTERRUPTED_MESSAGE, next_job=True, **base)
    reason, text = _explain_exit(code)
    if job_reason == JOB_BACKOFF_LIMIT_EXCEEDED:
        text = f"{text}; gave up after {attempts} attempt(s) (spec.retries)"
    if code in REASONS and report and report.get("summary"):
        # The runtime's own words say which provider, budget or tool, and why (kubectl describe).
        text = f"{text}: {_first_line(str(report['summary']), MESSAGE_DETAIL_CHARS)}"
    return Observed(Phase.FAILED, reason, text, completion_time=end, **base)


WAITING_MESSAGE = "waiting for the run's pod to start"


def _no_report(pod: Pod | None) -> str:
    """Why a succeeded run has no result and usage (status.result and status.usage stay unset)."""
    if pod is None:
        why = "its pod is gone"
    else:
        terminated = (_container(pod).get("state") or {}).get("terminated") or {}
        why = (
            "its termination message is not the runtime's report"
            if terminated.get("message")
            else "its pod left no termination message"
        )
    return f"the Job succeeded, but the run's report could not be read ({why}): result and usage unknown"


MESSAGE_DETAIL_CHARS = 300  # of the runtime's summary, in a failed run's message (all of it: status.result)


def _first_line(text: str, limit: int) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _final_config_error(message: str) -> bool:
    """A missing Secret or key will not appear by itself; "failed to sync secret cache" will pass."""
    return "not found" in message or "couldn't find key" in message


def _pod_state(pod: Pod, base: _Seen) -> Observed | None:
    """What a pod that has not terminated says (None if it says nothing new)."""
    pod_status = pod.get("status") or {}
    waiting = (_container(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in IMAGE_ERRORS:
        return Observed(
            Phase.FAILED,
            Reason.IMAGE_PULL_FAILED,
            f"the workspace image cannot be pulled ({waiting['reason']}): "
            f"{waiting.get('message', '')}".strip(),
            stop_job=True,
            **base,
        )
    if waiting.get("reason") in CONFIG_ERRORS and _final_config_error(waiting.get("message", "")):
        return Observed(
            Phase.FAILED,
            Reason.CONTAINER_CONFIG_ERROR,
            f"the run cannot start: {waiting.get('message', waiting['reason'])}",
            stop_job=True,
            **base,
        )
    if pod_status.get("reason") == POD_EVICTED:
        return Observed(
            Phase.RUNNING,
            Reason.EVICTED,
            f"the pod was evicted ({pod_status.get('message', '')}); a new pod is started",
            **base,
        )
    for cond in pod_status.get("conditions") or []:
        if (
            cond.get("type") == POD_SCHEDULED
            and cond.get("status") == "False"
            and cond.get("reason") == POD_UNSCHEDULABLE
        ):
            return Observed(
                Phase.PENDING,
                Reason.UNSCHEDULABLE,
                f"no node can run the pod yet: {cond.get('message', '')}",
                **base,
            )
    if pod_status.get("phase") == POD_RUNNING:
        return Observed(Phase.RUNNING, Reason.RUNNING, "the agent is running", **base)
    return None


def observe_pod(pod_read: Mapping[str, object]) -> Observed | None:
    """A pod event on its own: its success (exit 0 completes the Job: the run's outcome is known a
    Job-controller sync before the Job says so), or non-terminal news (the other ends come with the
    Job's, which decides on retries). A pod that stopped at a checkpoint is such news: the run goes on
    in the pod that replaces it."""
    pod = cast(Pod, pod_read)
    terminated = (_container(pod).get("state") or {}).get("terminated")
    if terminated:
        if terminated.get("exitCode") == 0:
            report = parse_report(terminated.get("message"))
            start = (pod.get("status") or {}).get("startTime")
            return _succeeded(
                pod, report, terminated.get("finishedAt"), _reported(pod, report, {"start_time": start})
            )
        if not interrupted(pod):
            return None
        report = _exit(pod)[1]  # its usage is not the run's yet: the last pod reports the whole
        checkpoint = checkpoint_status(report) if report else None
        # Its exit code alone ends the Job (the podFailurePolicy's first matching rule): the next Job
        # is due now, not once the Job controller says so (its sync, about a second later).
        return Observed(
            Phase.RUNNING, Reason.INTERRUPTED, INTERRUPTED_MESSAGE, checkpoint=checkpoint, next_job=True
        )
    return _pod_state(pod, {"start_time": (pod.get("status") or {}).get("startTime")})


def status_patch(
    current: Mapping[str, Any],
    seen: Observed,
    generation: int | None,
    now: str,
    job_name: str | None = None,
    correlation_id: str | None = None,
) -> ExecutionStatus:
    """The status fields to write for an observation (conditions via the one helper), and the run's
    Job and correlation id when given."""
    conds = current.get("conditions") or []
    started = seen.phase in (Phase.RUNNING, Phase.SUCCEEDED, Phase.FAILED, Phase.WAITING_APPROVAL)
    conds = set_condition(
        conds,
        ConditionType.STARTED,
        started,
        Reason.POD_STARTED if started else seen.reason,
        "" if started else seen.message,
        generation,
        now,
    )
    succeeded = (seen.phase == Phase.SUCCEEDED) if seen.phase.terminal else None
    conds = set_condition(
        conds, ConditionType.SUCCEEDED, succeeded, seen.reason, seen.message, generation, now
    )
    patch: dict[str, object] = {
        "phase": seen.phase,
        "reason": str(seen.reason),
        "message": seen.message,
        "conditions": conds,
        "observedGeneration": generation,
    }
    if seen.attempts:
        patch["attempts"] = seen.attempts
    start = current.get("startTime") or seen.start_time  # the run's first Job's: a later one resumes it
    if start:
        patch["startTime"] = start
    if seen.phase.terminal:
        end = seen.completion_time or current.get("completionTime") or now
        patch["completionTime"] = end
        patch["duration"] = format_duration(start, end)
    fields = (
        ("result", seen.result),
        ("usage", seen.usage),
        ("mcp", seen.mcp),
        ("checkpoint", seen.checkpoint),
    )
    for key, value in fields:
        if value is not None:
            patch[key] = value
    if seen.approval is not None or current.get("approval") is not None:
        patch["approval"] = seen.approval
    if job_name is not None:
        patch["jobName"] = job_name
    if correlation_id is not None:
        patch["correlationId"] = correlation_id
    return ExecutionStatus.model_validate(patch)
