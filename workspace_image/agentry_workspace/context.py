"""Context that fits: when a run's conversation nears its model's context window, compact it.

When the next request would fill more than the Agent's threshold (spec.context.thresholdPercent of
the window, counting the request's max_tokens as the providers do), two steps, cheapest first, the
second only while the request is still above half the threshold (so that a compaction does not
recur, and move the cached prefix, at every following turn):
1. long tool results of earlier turns are cut to their head and tail, with a note saying how much was
   cut (the newest results, which the model has not read yet, stay whole);
2. the older turns are summarised by one model call and replaced by one user message: the run's task
   and the summary. The newest turns stay verbatim; the kept part starts at an assistant message, so
   a tool_use and its tool_result are never separated.
A compaction changes the conversation's prefix once; the cache breakpoints then resume on the new one.
Tokens are estimated as the LLM gateway estimates them: a request's JSON bytes / 4.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from agentry_common.models import Compaction
from agentry_common.pricing import table_name
from agentry_llm import ChatRequest, ChatResponse, Message, TextBlock, ToolResultBlock, ToolUseBlock
from agentry_llm.caching import place_breakpoints

from .config import RunConfig
from .events import EventSink

BYTES_PER_TOKEN: Final = 4
# Context windows in tokens (input and output together), from the providers' model pages. Every
# Claude model has 200k by default; gpt-5's input is limited to 272k of its 400k.
CLAUDE_WINDOW: Final = 200_000
CONTEXT_WINDOWS: Final[dict[str, int]] = {
    "gpt-5": 272_000,
    "gpt-5-mini": 272_000,
    "gpt-5-nano": 272_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4.1-nano": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
}
DEFAULT_WINDOW: Final = 128_000  # an unknown model: the smallest window of the models above

KEEP_TURNS: Final = 2  # newest assistant turns (and their tool results) kept verbatim
CUT_ABOVE_CHARS: Final = 4000  # an earlier tool result longer than this is cut ...
CUT_HEAD_CHARS: Final = 1500  # ... to its head ...
CUT_TAIL_CHARS: Final = 500  # ... and its tail
TASK_CHARS: Final = 8000  # of the run's task, kept in the compacted conversation
SUMMARY_MAX_TOKENS: Final = 2048
SUMMARY_SYSTEM: Final = (
    "You summarise the earlier part of an AI agent's working session so that the agent can continue "
    "its task without it. Keep what the agent still needs: the facts it found, the files, commands "
    "and results that matter, decisions made and why, errors met, and what is left to do. Leave out "
    "greetings and repetition. Answer with the summary only."
)


def context_window(model: str) -> int:
    name = table_name(model)
    if name.startswith("claude-"):
        return CLAUDE_WINDOW
    return CONTEXT_WINDOWS.get(name, DEFAULT_WINDOW)


def estimate_tokens(request: ChatRequest) -> int:
    return math.ceil(len(request.model_dump_json(exclude_none=True).encode()) / BYTES_PER_TOKEN)


class ContextOverflow(Exception):
    """Even the compacted conversation does not fit the model's context window."""

    def __init__(self, message: str, compaction: Compacted) -> None:
        super().__init__(message)
        self.compaction = compaction


@dataclass(frozen=True)
class Limits:
    window: int
    threshold_percent: int
    max_tokens: int  # the request's output reservation, part of the window

    def over_threshold(self, tokens: int) -> bool:
        return (tokens + self.max_tokens) * 100 > self.window * self.threshold_percent

    def over_target(self, tokens: int) -> bool:
        """Above half the threshold: what a compaction aims under, so that it does not recur (and
        move the cached prefix) at every following turn."""
        return (tokens + self.max_tokens) * 200 > self.window * self.threshold_percent

    def fits(self, tokens: int) -> bool:
        return tokens + self.max_tokens <= self.window


@dataclass
class Compacted:
    """What one compaction did (the `compaction` event)."""

    messages: list[Message]
    tokens_before: int
    tokens_after: int
    cut_results: int = 0
    summarised_messages: int = 0


def _cut(text: str) -> str:
    cut = len(text) - CUT_HEAD_CHARS - CUT_TAIL_CHARS
    note = (
        f"\n[agentry: {cut} of this tool result's {len(text)} characters were cut here to fit the "
        "model's context window]\n"
    )
    return text[:CUT_HEAD_CHARS] + note + text[-CUT_TAIL_CHARS:]


def cut_tool_results(messages: list[Message]) -> tuple[list[Message], int]:
    """The messages with every long tool result but the newest message's cut; how many were cut."""
    out: list[Message] = []
    count = 0
    for index, message in enumerate(messages):
        if index == len(messages) - 1:
            out.append(message)
            continue
        blocks = []
        for block in message.content:
            if isinstance(block, ToolResultBlock) and len(block.content) > CUT_ABOVE_CHARS:
                block = block.model_copy(update={"content": _cut(block.content)})
                count += 1
            blocks.append(block)
        out.append(message.model_copy(update={"content": blocks}))
    return out, count


def split_point(messages: list[Message], keep_turns: int) -> int | None:
    """Where the verbatim part starts: the keep_turns-th newest assistant message; None when nothing
    before it is left to summarise but the task."""
    assistants = [i for i, m in enumerate(messages) if m.role == "assistant"]
    if len(assistants) < keep_turns:
        return None
    start = assistants[-keep_turns]
    return start if start > 1 else None


def _render(block: TextBlock | ToolUseBlock | ToolResultBlock) -> str:
    if isinstance(block, TextBlock):
        return block.text
    if isinstance(block, ToolUseBlock):
        return f"[tool call {block.name} {json.dumps(block.input, ensure_ascii=False)[:1000]}]"
    head = "[tool error]" if block.is_error else "[tool result]"
    return f"{head}\n{block.content}"


def summary_request(head: list[Message], window: int) -> ChatRequest:
    """The summary call: the older turns as one transcript, its middle cut so that the call uses at
    most about half the window for its input."""
    parts = [f"## {m.role}\n" + "\n".join(_render(b) for b in m.content) for m in head]
    text = "\n\n".join(parts)
    max_tokens = min(SUMMARY_MAX_TOKENS, window // 4)
    room = (window - max_tokens) * BYTES_PER_TOKEN // 2
    if len(text) > room:
        cut = len(text) - room
        text = f"{text[: room // 2]}\n[agentry: {cut} characters cut here]\n{text[-room // 2 :]}"
    ask = "Summarise this earlier part of the session:\n\n" + text
    return ChatRequest(
        system=SUMMARY_SYSTEM,
        messages=[Message(role="user", content=[TextBlock(text=ask)])],
        max_tokens=max_tokens,
    )


def _task_block(first: Message) -> TextBlock:
    block = first.content[0] if first.content else None
    text = block.text if isinstance(block, TextBlock) else first.text()
    if len(text) > TASK_CHARS:
        text = text[:TASK_CHARS] + f"\n[agentry: {len(text) - TASK_CHARS} characters of the task cut here]"
    return TextBlock(text=text)


def compacted(head: list[Message], summary: str, tail: list[Message]) -> list[Message]:
    note = (
        f"[agentry: the {len(head)} earliest messages of this conversation were summarised to fit the "
        f"model's context window]\n\n{summary}"
    )
    first = Message(role="user", content=[_task_block(head[0]), TextBlock(text=note)])
    return [first, *tail]


Build = Callable[[list[Message]], ChatRequest]
Summarise = Callable[[ChatRequest], Awaitable[ChatResponse]]


async def compact(
    messages: list[Message], build: Build, limits: Limits, summarise: Summarise
) -> Compacted | None:
    """The conversation made to fit under the threshold (None: it is under already); raises
    ContextOverflow when even the compacted one does not fit the window."""
    before = estimate_tokens(build(messages))
    if not limits.over_threshold(before):
        return None
    current, cut = cut_tool_results(messages)
    done = Compacted(current, before, estimate_tokens(build(current)), cut_results=cut)
    if limits.over_target(done.tokens_after):
        start = split_point(current, KEEP_TURNS)
        if start is None or limits.over_target(estimate_tokens(build(current[start:]))):
            start = split_point(current, 1) or start  # the newest turns alone are large: keep fewer
        if start is not None:
            response = await summarise(summary_request(current[:start], limits.window))
            done.messages = compacted(current[:start], response.message.text(), current[start:])
            done.summarised_messages = start
            done.tokens_after = estimate_tokens(build(done.messages))
    if not limits.fits(done.tokens_after):
        raise ContextOverflow(
            f"the conversation needs about {done.tokens_after} tokens plus {limits.max_tokens} for the "
            f"answer even after compaction, more than the model's context window of {limits.window} "
            "tokens",
            done,
        )
    return done if done.cut_results or done.summarised_messages else None


class ContextKeeper:
    """A run's requests: the conversation kept within its model's window (spec.context), each
    request's prompt-cache breakpoints placed (spec.promptCaching)."""

    def __init__(self, cfg: RunConfig, models: list[str], events: EventSink, summarise: Summarise) -> None:
        window = cfg.settings.context_window_tokens or min(
            map(context_window, models), default=DEFAULT_WINDOW
        )
        self.limits = Limits(window, cfg.spec.context.threshold_percent, cfg.settings.max_output_tokens)
        self.spec = cfg.spec
        self.events = events
        self.summarise = summarise

    async def fit(self, messages: list[Message], build: Build, turn: int) -> list[Message]:
        """The conversation for the next request, compacted when it nears the window; raises
        ContextOverflow when it cannot fit."""
        if self.spec.context.compaction is Compaction.OFF:
            return messages
        try:
            done = await compact(messages, build, self.limits, self.summarise)
        except ContextOverflow as err:
            if err.compaction.cut_results or err.compaction.summarised_messages:
                self._emit(err.compaction, turn)
            raise
        if done is None:
            return messages
        self._emit(done, turn)
        return done.messages

    def with_breakpoints(self, request: ChatRequest) -> ChatRequest:
        caching = self.spec.prompt_caching
        return place_breakpoints(request, caching.ttl) if caching.enabled else request

    def _emit(self, done: Compacted, turn: int) -> None:
        self.events.emit(
            "compaction",
            turn=turn,
            contextWindow=self.limits.window,
            tokensBefore=done.tokens_before,
            tokensAfter=done.tokens_after,
            cutToolResults=done.cut_results,
            summarisedMessages=done.summarised_messages,
            keptMessages=len(done.messages) - (1 if done.summarised_messages else 0),
        )
