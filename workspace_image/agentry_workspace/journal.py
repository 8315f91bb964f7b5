"""A run's journal: the entry kinds the runtime writes (agentry_common.checkpoints stores them as
opaque `kind` + `data`) and `replay`, the state a pod continues from. Pure: no I/O.

Kinds and their data (workspace_image/README.md, "Checkpoints"):
- `begin`: a pod starts or resumes the run: {pod, resumed, parent?}.
- `message`: one message appended to the conversation: {message, usage, outputs, final?} (usage: the
  UsageTracker's state after it; `final`: the model's answer ends the run).
- `reset`: the conversation replaced (a compaction; a follow-up's inherited conversation):
  {reason, messages, usage, outputs, parent?}.
- `tool_started`: the intent, written before a call runs: {toolUseId, tool}.
- `tool_result`: the call's result: {result (a ToolResultBlock), outputs}.
- `paused`: the run stopped for an approval: {approvalId, toolUseId}.
- `steer`: steering messages delivered (steering.py): {messages: [{seq, id, by, interrupt}], text}
  (text: what joined the conversation, as a user message's text block).
- `interrupt`: a person interrupted the run and its turn ended: {messages, then: end|wait, until?}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from agentry_common.checkpoints import Entry
from agentry_llm import Message, TextBlock, ToolResultBlock, ToolUseBlock

BEGIN: Final = "begin"
MESSAGE: Final = "message"
RESET: Final = "reset"
TOOL_STARTED: Final = "tool_started"
TOOL_RESULT: Final = "tool_result"
PAUSED: Final = "paused"
STEER: Final = "steer"
INTERRUPT: Final = "interrupt"
KINDS: Final = frozenset({BEGIN, MESSAGE, RESET, TOOL_STARTED, TOOL_RESULT, PAUSED, STEER, INTERRUPT})

INTERRUPTED_RESULT = (
    "This call was interrupted by the loss of the run's pod (evicted, deleted or its node lost) "
    "after it started and before its result was saved. It may or may not have taken effect: check "
    "before doing it again."
)
NOT_RUN_RESULT = "This call was not run: the run ended before it."


def begin(pod: str, *, resumed: bool, parent: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {"pod": pod, "resumed": resumed}
    if parent:
        data["parent"] = parent
    return data


def message(
    msg: Message, usage: dict[str, Any], outputs: dict[str, str], *, final: bool = False
) -> dict[str, Any]:
    data: dict[str, Any] = {"message": msg.model_dump(mode="json"), "usage": usage, "outputs": dict(outputs)}
    if final:
        data["final"] = True
    return data


def reset(
    reason: str, messages: list[Message], usage: dict[str, Any], outputs: dict[str, str], parent: str = ""
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "reason": reason,
        "messages": [m.model_dump(mode="json") for m in messages],
        "usage": usage,
        "outputs": dict(outputs),
    }
    if parent:
        data["parent"] = parent
    return data


def tool_started(use: ToolUseBlock) -> dict[str, Any]:
    return {"toolUseId": use.id, "tool": use.name}


def tool_result(
    result: ToolResultBlock, outputs: dict[str, str], *, interrupted: bool = False
) -> dict[str, Any]:
    data: dict[str, Any] = {"result": result.model_dump(mode="json"), "outputs": dict(outputs)}
    if interrupted:
        data["interrupted"] = True  # reported to the model as interrupted by a lost pod
    return data


def paused(approval_id: str, tool_use_id: str) -> dict[str, Any]:
    return {"approvalId": approval_id, "toolUseId": tool_use_id}


def steer(messages: list[dict[str, Any]], text: str) -> dict[str, Any]:
    return {"messages": messages, "text": text}


def interrupt(messages: list[dict[str, Any]], then: str, until: str = "") -> dict[str, Any]:
    data: dict[str, Any] = {"messages": messages, "then": then}
    if until:
        data["until"] = until
    return data


@dataclass
class Replayed:
    """What a journal says: the state to continue from."""

    messages: list[Message] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    # The last assistant message's tool calls, by what the journal knows of each.
    done: list[ToolResultBlock] = field(default_factory=list)
    interrupted: list[ToolUseBlock] = field(default_factory=list)
    not_started: list[ToolUseBlock] = field(default_factory=list)
    final: bool = False  # the model's last answer ended the run (a pod lost while writing its result)
    paused: bool = False  # the last step was an approval pause (nothing but `begin` after it)
    entries: int = 0
    resumes: int = 0
    interrupted_calls: int = 0  # calls reported to the model as interrupted, over the whole run
    # `begin` entries with resumed=true since the last other entry: resumes that made no progress.
    idle_resumes: int = 0
    first_at: str = ""
    last_at: str = ""
    steered: int = 0  # the highest inbox seq taken (steer and interrupt entries)
    # The last step was a person's interrupt: `end` (the run ends) or `wait` (until `until`).
    interrupted_then: str = ""
    until: str = ""

    @property
    def empty(self) -> bool:
        return self.entries == 0

    @property
    def pending(self) -> list[ToolUseBlock]:
        """The calls still to run or report, in the model's order."""
        return [*self.interrupted, *self.not_started]


def replay(entries: list[Entry]) -> Replayed:
    """The state after `entries` (a verified journal, in seq order). Unknown kinds are skipped: a
    newer runtime's entries do not stop an older one from resuming."""
    out = Replayed(entries=len(entries))
    started: dict[str, str] = {}
    results: dict[str, ToolResultBlock] = {}
    for entry in entries:
        data = entry.data
        out.first_at = out.first_at or entry.at
        out.last_at = entry.at or out.last_at
        if entry.kind == BEGIN:
            if data.get("resumed"):
                out.resumes += 1
                out.idle_resumes += 1
            continue
        out.idle_resumes = 0
        out.interrupted_then = ""
        if entry.kind in (STEER, INTERRUPT):
            seqs = [int(m.get("seq", 0)) for m in data.get("messages") or []]
            out.steered = max([out.steered, *seqs])
        if entry.kind == INTERRUPT:
            out.interrupted_then, out.until = str(data.get("then", "")), str(data.get("until", ""))
        if entry.kind in (MESSAGE, RESET, TOOL_RESULT):
            out.outputs = {str(k): str(v) for k, v in (data.get("outputs") or {}).items()}
        out.paused = entry.kind == PAUSED
        if entry.kind == MESSAGE:
            msg = Message.model_validate(data["message"])
            out.messages = _with_results(out.messages, results)
            out.messages.append(msg)
            out.usage = dict(data.get("usage") or {})
            out.final = bool(data.get("final"))
            started, results = {}, {}
        elif entry.kind == RESET:
            out.messages = [Message.model_validate(m) for m in data.get("messages") or []]
            out.usage = dict(data.get("usage") or {})
            out.final = False
            started, results = {}, {}
        elif entry.kind == STEER and data.get("text"):
            out.messages = with_text(_with_results(out.messages, results), str(data["text"]))
            out.final = False
            started, results = {}, {}
        elif entry.kind == TOOL_STARTED:
            started[str(data.get("toolUseId"))] = str(data.get("tool"))
        elif entry.kind == TOOL_RESULT:
            result = ToolResultBlock.model_validate(data["result"])
            results[result.tool_use_id] = result
            out.interrupted_calls += bool(data.get("interrupted"))
    _split_calls(out, started, results)
    return out


def _split_calls(out: Replayed, started: dict[str, str], results: dict[str, ToolResultBlock]) -> None:
    last = out.messages[-1] if out.messages else None
    uses = last.tool_uses() if last is not None and last.role == "assistant" else []
    for use in uses:
        if use.id in results:
            out.done.append(results[use.id])
        elif use.id in started:
            out.interrupted.append(use)
        else:
            out.not_started.append(use)
    if uses and not out.interrupted and not out.not_started:
        # Every call has its result: the conversation continues with them, as the runner sends it.
        out.messages = _with_results(out.messages, results)
        out.done = []


def _with_results(messages: list[Message], results: dict[str, ToolResultBlock]) -> list[Message]:
    """The conversation with the tool results of its last assistant message appended (as the runner
    appends them after the last call), if there are any and they are not there yet."""
    last = messages[-1] if messages else None
    if last is None or last.role != "assistant" or not results:
        return messages
    blocks = [results[u.id] for u in last.tool_uses() if u.id in results]
    return [*messages, Message(role="user", content=list(blocks))] if blocks else messages


def with_text(messages: list[Message], text: str) -> list[Message]:
    """The conversation with a user's text added: to its last message when that is the user's (the
    tool results of a turn, or the input), else as a new user message."""
    block = TextBlock(text=text)
    if messages and messages[-1].role == "user":
        last = messages[-1]
        return [*messages[:-1], Message(role="user", content=[*last.content, block])]
    return [*messages, Message(role="user", content=[block])]


def continue_with(replayed: Replayed, text: str) -> list[Message]:
    """A finished run's conversation followed by a new user message (a follow-up): calls of its last
    turn that never got a result are answered as not run, in the same user message."""
    messages = list(replayed.messages)
    blocks: list[Any] = [*replayed.done]
    blocks += [
        ToolResultBlock(tool_use_id=u.id, content=NOT_RUN_RESULT, is_error=True) for u in replayed.pending
    ]
    blocks.append(TextBlock(text=text))
    if messages and messages[-1].role == "user":
        last = messages.pop()
        blocks = [*last.content, *blocks]
    messages.append(Message(role="user", content=blocks))
    return messages
