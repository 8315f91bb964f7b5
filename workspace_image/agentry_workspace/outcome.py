"""How a run ends: stop reason, exit code, and the compact result for the termination log."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from agentry_common.exitcodes import FINAL, ExitCode
from agentry_common.governance import RefusalType

# The kubelet keeps at most 4096 bytes of a container's termination message.
TERMINATION_LIMIT = 4096


class StopReason(StrEnum):
    END_TURN = "end_turn"
    ERROR = "error"
    CONFIG_ERROR = "config_error"
    MAX_TURNS = "max_turns"
    MAX_TOKENS = "max_tokens"
    MAX_COST = "max_cost"
    DEADLINE = "deadline"
    BUDGET_EXCEEDED = RefusalType.BUDGET_EXCEEDED.value  # the LLM gateway's refusal, same word
    PROVIDERS_FAILED = "providers_failed"
    PID_LIMIT = "pid_limit"  # a tool used up the pod's process limit (pidguard.py)
    WORKSPACE_FULL = "workspace_full"  # a kept workspace grew past its size (workspace_guard.py)
    CONTEXT_OVERFLOW = "context_overflow"  # even compacted, the conversation exceeds the window
    APPROVAL_REQUIRED = "approval_required"
    RESUME_LIMIT = "resume_limit"  # resumed MAX_RESUMES_WITHOUT_PROGRESS times without a new entry
    INTERRUPTED = "interrupted"  # SIGTERM (or another pod ahead): stopped at a checkpoint, not final
    USER_INTERRUPT = "user_interrupt"  # a person interrupted the run (steering): it ends Succeeded


# The codes themselves are the operator's contract too: they live in agentry_common.exitcodes.
EXIT_CODES: dict[StopReason, int] = {
    StopReason.END_TURN: ExitCode.COMPLETED,
    StopReason.ERROR: ExitCode.INTERNAL_ERROR,
    StopReason.CONFIG_ERROR: ExitCode.CONFIG_ERROR,
    StopReason.MAX_TURNS: ExitCode.MAX_TURNS,
    StopReason.MAX_TOKENS: ExitCode.MAX_TOKENS,
    StopReason.MAX_COST: ExitCode.MAX_COST,
    StopReason.DEADLINE: ExitCode.DEADLINE,
    StopReason.BUDGET_EXCEEDED: ExitCode.BUDGET_EXCEEDED,
    StopReason.PROVIDERS_FAILED: ExitCode.PROVIDERS_FAILED,
    StopReason.PID_LIMIT: ExitCode.PID_LIMIT,
    StopReason.WORKSPACE_FULL: ExitCode.WORKSPACE_FULL,
    StopReason.CONTEXT_OVERFLOW: ExitCode.CONTEXT_OVERFLOW,
    StopReason.APPROVAL_REQUIRED: ExitCode.APPROVAL_REQUIRED,
    StopReason.RESUME_LIMIT: ExitCode.RESUME_LIMIT,
    StopReason.INTERRUPTED: ExitCode.INTERRUPTED,
    StopReason.USER_INTERRUPT: ExitCode.COMPLETED,
}
# Only an internal error may succeed on a plain retry of the Job; every other stop is either
# success or a decision (budget, deadline, approval, configuration) that a retry would repeat.
# INTERRUPTED is not a failure: a new pod resumes the run without using a retry.
RETRYABLE_EXIT_CODES = frozenset(
    int(c) for c in ExitCode if c not in FINAL and c not in (ExitCode.COMPLETED, ExitCode.INTERRUPTED)
)


@dataclass
class Outcome:
    stop_reason: StopReason
    summary: str
    usage: dict[str, Any] = field(default_factory=dict)
    approval: dict[str, Any] | None = None
    retries: int = 0
    fallbacks: int = 0
    # Per MCP server: the tools offered (name -> risk) or why it could not be reached.
    mcp: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # the named outputs set (set_output)
    # The run's journal ({entries, resumes, interruptedCalls, lastAt}: CheckpointStatus); None without.
    checkpoint: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.stop_reason]

    def redacted(self, redact: Callable[[Any], Any]) -> Outcome:
        """A copy with every field passed through `redact`: all of the result leaves the pod, so a
        field added later is redacted too (tests/unit/workspace/test_outbound_redaction.py)."""
        return replace(self, **{f.name: redact(getattr(self, f.name)) for f in fields(self)})

    def full(self) -> dict[str, Any]:
        """The untruncated result (written to <workspace>/.agentry/result.json)."""
        data: dict[str, Any] = {
            "stopReason": self.stop_reason.value,
            "exitCode": self.exit_code,
            "summary": self.summary,
            "truncated": False,
            "usage": self.usage,
            "retries": self.retries,
            "fallbacks": self.fallbacks,
        }
        if self.approval is not None:
            data["approval"] = self.approval
        if self.mcp:
            data["mcp"] = self.mcp
        if self.outputs:
            data["outputs"] = self.outputs
        if self.checkpoint is not None:
            data["checkpoint"] = self.checkpoint
        return data


def _dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _cut(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[: max(0, max_bytes)].decode("utf-8", errors="ignore")


def termination_message(outcome: Outcome, limit: int = TERMINATION_LIMIT) -> str:
    """Compact JSON of at most `limit` bytes: the summary is cut first, then approval details."""
    data = outcome.full()
    del data["exitCode"]
    if data.get("approval"):
        approval = dict(data["approval"])
        for key in ("arguments", "reason"):
            if isinstance(approval.get(key), str):
                approval[key] = _cut(approval[key], 600)
        data["approval"] = approval
    encoded = _dump(data)
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    summary = str(data["summary"])
    data["truncated"] = True
    # Binary search on characters: JSON escaping makes the byte size of a prefix non-linear.
    lo, hi = 0, min(len(summary), limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        data["summary"] = summary[:mid]
        if len(_dump(data)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    if lo > 0:
        data["summary"] = summary[:lo]
        return _dump(data).decode("utf-8")
    data["summary"] = ""
    encoded = _dump(data)
    if len(encoded) <= limit:
        return encoded.decode("utf-8")
    # Only absurd approval/usage content gets here: keep what the operator needs to act.
    minimal = {
        "stopReason": data["stopReason"],
        "summary": "",
        "truncated": True,
        "usage": data["usage"],
    }
    if data.get("approval"):
        minimal["approval"] = {"id": data["approval"].get("id")}
    if data.get("checkpoint"):
        minimal["checkpoint"] = data["checkpoint"]
    return _dump(minimal).decode("utf-8")[:limit]


def write_result(path: Path, outcome: Outcome) -> bool:
    """Write the termination message; a missing /dev/termination-log (local runs) is not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(termination_message(outcome), encoding="utf-8")
    except OSError as err:
        print(f"agentry: cannot write result to {path}: {err}", file=sys.stderr)
        return False
    return True
