"""Pausing a run for a human's approval and picking it up again: the saved state, the checks on
resume.json, and what the model is told when a human says no (workspace_image/README.md)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentry_common.statesig import ENV_STATE_KEY, SIGNATURE_FIELD, sign_state
from agentry_llm import ToolResultBlock, ToolUseBlock

from . import journal
from .config import STATE_FILE, ConfigError
from .events import EventSink
from .outcome import Outcome, StopReason
from .policy import Verdict, assess_call
from .state import Decision, PendingApproval, ResumeRequest, RunState, approval_id
from .toolrun import unrun_result
from .usage import UsageTracker

if TYPE_CHECKING:
    from .runner import Runner

DENIED = (
    "A human denied this action{who}{why}. It was not executed. Do not try it "
    "again; continue without it, or finish and explain what could not be done."
)


def save_state(state_dir: Path, state: RunState) -> Path:
    """Write the paused run's state to <workspace>/.agentry/state.json; returns the path."""
    path = state_dir / STATE_FILE
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state.wire()), encoding="utf-8")
    return path


def approval_summary(
    approval_id: str, use: ToolUseBlock, verdict: Verdict, arguments: str, timeout_seconds: int
) -> dict[str, Any]:
    """The `approval` of the run's result: what the operator shows and waits on."""
    return {
        "id": approval_id,
        "tool": use.name,
        "toolUseId": use.id,
        "risk": verdict.risk.value,
        "reason": verdict.reason,
        "arguments": arguments,
        "timeoutSeconds": timeout_seconds,
    }


def check_resume(resume: ResumeRequest, execution: str) -> None:
    """The decision must answer the approval the saved state waits for, of this execution."""
    state, decision = resume.state, resume.decision
    pending = state.pending
    if decision.approval_id != pending.approval_id:
        raise ConfigError(
            f"resume.json: decision is for approval {decision.approval_id!r} but the saved "
            f"state waits for {pending.approval_id!r}"
        )
    if state.execution != execution:
        raise ConfigError(
            f"resume.json: state belongs to execution {state.execution!r}, this is {execution!r}"
        )


def emit_decision(events: EventSink, resume: ResumeRequest) -> None:
    pending, decision = resume.state.pending, resume.decision
    events.emit(
        "approval_decision",
        approvalId=pending.approval_id,
        tool=pending.tool_use.name,
        approved=decision.approved,
        decidedBy=decision.decided_by,
        reason=decision.reason,
    )


def denied_result(events: EventSink, use: ToolUseBlock, decision: Decision) -> ToolResultBlock:
    """The tool result for a call a human denied (it is not run), reported as a refused call."""
    who = f" by {decision.decided_by}" if decision.decided_by else ""
    why = f": {decision.reason}" if decision.reason else ""
    return unrun_result(events, use, DENIED.format(who=who, why=why), refused=True, denied=True)


def signed_state(
    state: dict[str, Any], key: str, redact: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """The `state` of an approval_request event, signed when the run has a state key (its Secret's;
    tools never see it), so the operator can tell it from a line a tool printed (statesig.py).
    The state is redacted first, by the step the event then passes (which leaves it as it is): a
    secret a tool printed into the conversation would otherwise be redacted after signing, and the
    signature would never verify."""
    if redact is not None:
        state = redact(state)
    if not key:
        return {"state": state}
    return {"state": state, SIGNATURE_FIELD: sign_state(key, state)}


# -- the runner pauses and resumes (its journal records both) ----------------------------------------


async def pause(
    runner: Runner,
    use: ToolUseBlock,
    verdict: Verdict,
    done: list[ToolResultBlock],
    remaining: list[ToolUseBlock],
) -> Outcome:
    apr_id = approval_id(runner.cfg.execution, use.id)
    state = RunState(
        execution=runner.cfg.execution,
        agent=runner.cfg.agent,
        messages=runner.messages,
        completed_results=done,
        pending=PendingApproval(approval_id=apr_id, tool_use=use, risk=verdict.risk, reason=verdict.reason),
        remaining=remaining,
        usage=runner.usage.to_state(),
        outputs=runner.outputs.values,
    )
    state_path = save_state(runner.cfg.state_dir, state)
    await runner.durable.step(journal.PAUSED, journal.paused(apr_id, use.id))
    arguments = runner.tools[use.name].describe(use.input)
    timeout = runner.spec.approval.timeout_seconds
    runner.events.emit(
        "approval_request",
        approvalId=apr_id,
        tool=use.name,
        toolUseId=use.id,
        risk=verdict.risk.value,
        reason=verdict.reason,
        arguments=arguments,
        input=use.input,
        timeoutSeconds=timeout,
        stateFile=str(state_path),
        **signed_state(state.wire(), runner.cfg.env.get(ENV_STATE_KEY, ""), runner.events.redact),
    )
    return runner._stop(
        StopReason.APPROVAL_REQUIRED,
        f"Waiting for approval {apr_id}: {use.name} {arguments}",
        approval=approval_summary(apr_id, use, verdict, arguments, timeout),
    )


async def resume(runner: Runner) -> Outcome | None:
    resume = runner.cfg.resume
    assert resume is not None
    check_resume(resume, runner.cfg.execution)
    state, decision = resume.state, resume.decision
    runner.messages = list(state.messages)
    runner.usage = UsageTracker.from_state(state.usage)
    runner.outputs.values = dict(state.outputs)
    emit_decision(runner.events, resume)
    use = state.pending.tool_use
    if decision.approved:
        # Approval lifts the wait, never a refusal: the allow-list is checked again.
        verdict = assess_call(runner.tools.get(use.name), use.name, use.input, runner.spec, runner.ctx)
        if verdict.action == "approve":
            verdict = Verdict("run", verdict.risk, verdict.reason)
        result = await runner._execute(use, verdict)
    else:
        result = denied_result(runner.events, use, decision)
        runner.durable.stage(journal.TOOL_RESULT, journal.tool_result(result, runner.outputs.values))
    return await runner._run_tool_calls(state.remaining, [*state.completed_results, result])
