"""Where an agent loop's requests mark prompt-cache breakpoints (Anthropic's `cache_control`).

A loop sends the same tools and system prompt at every turn and its conversation grows only at the
end, so three breakpoints cover what repeats (docs.anthropic.com, "Prompt caching"; a request may
carry at most four, `pricing.CACHE_MAX_BREAKPOINTS`):
- the end of the system prompt: the stable prefix (tools come before the system in the cache's
  order, so this one covers them too);
- the last block of the previous user message: where the previous turn's rolling breakpoint was, so
  this turn reads what that one wrote even when a turn adds more blocks than the provider's 20-block
  look-back;
- the last block of the newest message: the rolling breakpoint that writes this turn's prefix for
  the next one.
A breakpoint on a prefix shorter than the model's minimum is ignored by the provider at no charge,
so none is placed by length. Providers that cache by themselves (OpenAI) ignore the marks.
"""

from __future__ import annotations

from typing import Literal

from .types import CacheMark, ChatRequest, Message, TextBlock


def _unmarked(messages: list[Message]) -> list[Message]:
    return [
        m.model_copy(update={"content": [b.model_copy(update={"cache": None}) for b in m.content]})
        for m in messages
    ]


def _mark_last(message: Message, mark: CacheMark) -> Message:
    if not message.content:
        return message
    *head, last = message.content
    return message.model_copy(update={"content": [*head, last.model_copy(update={"cache": mark})]})


def place_breakpoints(request: ChatRequest, ttl: Literal["5m", "1h"] = "5m") -> ChatRequest:
    """A copy of `request` with the loop's breakpoints (any earlier marks removed)."""
    mark = CacheMark(ttl=ttl)
    tools = [t.model_copy(update={"cache": None}) for t in request.tools]
    system_text = request.system_text()
    system: str | list[TextBlock] = [TextBlock(text=system_text, cache=mark)] if system_text else ""
    messages = _unmarked(request.messages)
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    targets = {len(messages) - 1} if messages else set()
    if len(users) >= 2:
        targets.add(users[-2] if users[-1] == len(messages) - 1 else users[-1])
    for i in targets:
        messages[i] = _mark_last(messages[i], mark)
    if not system_text and tools:  # no system prompt: the tools' end is the stable prefix
        tools[-1] = tools[-1].model_copy(update={"cache": mark})
    return request.model_copy(update={"tools": tools, "system": system, "messages": messages})
