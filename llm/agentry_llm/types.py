"""Provider-neutral conversation types.

The conversation is kept in this one shape (close to the Anthropic Messages API, which is the
default provider) and translated at the edge by each provider. It is also what the approval flow
saves to disk, so every type here round-trips through JSON.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class CacheMark(BaseModel):
    """A prompt-cache breakpoint (Anthropic's `cache_control: {"type": "ephemeral"}`): the request's
    prefix up to and including the marked block may be written to and read from the provider's cache.
    Providers that cache without markers (OpenAI) ignore it."""

    model_config = ConfigDict(extra="forbid")

    ttl: Literal["5m", "1h"] = "5m"


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache: CacheMark | None = None


class TextBlock(_Block):
    type: Literal["text"] = "text"
    text: str


class ToolUseBlock(_Block):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(_Block):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str
    is_error: bool = False


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: list[Block]

    def text(self) -> str:
        return "".join(b.text for b in self.content if isinstance(b, TextBlock))

    def tool_uses(self) -> list[ToolUseBlock]:
        return [b for b in self.content if isinstance(b, ToolUseBlock)]


class ToolSpec(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]
    cache: CacheMark | None = None


class ToolChoice(BaseModel):
    """Anthropic's tool_choice: `auto`, `any` (some tool), `none`, or `tool` (the one named)."""

    type: Literal["auto", "any", "none", "tool"]
    name: str | None = None


class ChatRequest(BaseModel):
    """One model call. The model name is not here: each provider in a chain has its own.

    The sampling fields are optional pass-throughs (the LLM gateway relays them from its clients);
    unset, nothing is sent and the provider's defaults apply.
    """

    system: str | list[TextBlock]  # blocks where a cache breakpoint marks part of it
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    max_tokens: int = 8192
    temperature: float | None = None
    top_p: float | None = None
    stop_sequences: list[str] = Field(default_factory=list)
    tool_choice: ToolChoice | None = None
    # Sent with this call besides the provider's own (an Agentry gateway reads some: steering).
    headers: dict[str, str] = Field(default_factory=dict)

    def system_text(self) -> str:
        """The system prompt as one string (its blocks joined), for providers without blocks."""
        if isinstance(self.system, str):
            return self.system
        return "\n\n".join(b.text for b in self.system if b.text)


# Normalised stop reasons (Anthropic's names); OpenAI finish reasons are mapped onto these.
StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal", "other"]


class TokenUsage(BaseModel):
    """A call's tokens. `input_tokens` counts every input token, cached or not (as token budgets
    count them); the cache fields say which of them the provider wrote to or read from its cache,
    which it prices differently (agentry_common.pricing)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0  # of input_tokens: read from the cache
    cache_write_tokens: int = 0  # of input_tokens: written to the cache (any TTL)
    cache_write_1h_tokens: int = 0  # of cache_write_tokens: written with the 1-hour TTL

    @property
    def uncached_input_tokens(self) -> int:
        return max(0, self.input_tokens - self.cache_read_tokens - self.cache_write_tokens)


class ChatResponse(BaseModel):
    message: Message
    stop_reason: StopReason
    usage: TokenUsage
    provider: str
    model: str
    # The `x-agentry-*` headers of the answer: what an Agentry gateway said of the call (its budget
    # decision, the journal entries that rode the call and were stored).
    gateway: dict[str, str] = Field(default_factory=dict)
