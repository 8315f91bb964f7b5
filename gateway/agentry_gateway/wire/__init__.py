"""The two client protocols the gateway speaks, translated to and from the provider layer's types."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentry_llm import ChatRequest


class WireError(Exception):
    """A request the gateway cannot serve: answered with `status` and the protocol's error body."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


@dataclass
class Parsed:
    model: str
    chat: ChatRequest
    stream: bool
    # Request fields the gateway does not relay (they change cost or caching, not meaning).
    dropped: list[str] = field(default_factory=list)
    include_usage: bool = False  # OpenAI stream_options.include_usage
