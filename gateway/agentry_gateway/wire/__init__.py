"""The two client protocols the gateway speaks, translated to and from the provider layer's types.

`WireProtocol` is what the gateway needs of one: parse a request, render an answer, a stream and an
error. `anthropic.WIRE` and `openai.WIRE` implement it; the call pipeline never branches on which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from agentry_common.models import Provider as Flavour
from agentry_llm import ChatRequest, ChatResponse


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


class StreamWriter(Protocol):
    """The server-sent events of one streamed answer."""

    def open(self, model: str) -> bytes: ...

    def text(self, delta: str) -> bytes: ...

    def close(self, resp: ChatResponse) -> bytes: ...

    def fail(self, message: str) -> bytes: ...


class WireProtocol(Protocol):
    """One client protocol, as the call pipeline uses it."""

    @property
    def flavour(self) -> Flavour: ...

    # The protocol's error types for the gateway's own refusals: a bad run token (401), a model
    # without a route (404), every channel's breaker open (503; None: the status's default type).
    @property
    def unauthorized(self) -> str: ...

    @property
    def not_found(self) -> str: ...

    @property
    def overloaded(self) -> str | None: ...

    def parse(self, body: Any, default_max_tokens: int) -> Parsed: ...

    def answer(self, resp: ChatResponse, call_id: str, model: str) -> dict[str, Any]: ...

    def stream(self, call_id: str, parsed: Parsed) -> StreamWriter: ...

    def error(self, status: int, message: str, kind: str | None = None, **extra: Any) -> dict[str, Any]: ...
