"""The one small interface every LLM provider implements, and the error it raises."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from agentry_common.governance import RefusalType

from .types import ChatRequest, ChatResponse

TextCallback = Callable[[str], None]


class ProviderError(Exception):
    """A failed call, normalised across providers so retry/breaker/fallback logic is provider-agnostic.

    `retryable` is true for rate limits, overload, 5xx, timeouts and connection failures: the same
    request may succeed later. Anything else (bad key, bad request) will not get better by waiting,
    but may still succeed on another provider of the fallback chain.
    `final` marks a policy refusal (an Agentry LLM gateway's `RefusalType`, e.g. HTTP 402): a decision,
    not a fault, so no retry and no fallback either. `kind`: the error's type as the body names it.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        final: bool = False,
        kind: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.provider = provider
        self.status = status
        self.retryable = retryable and not final
        self.retry_after = retry_after
        self.final = final

    def short(self) -> str:
        code = f"HTTP {self.status}: " if self.status else ""
        return f"{code}{self.message}"[:300]


def is_refusal(error_type: str | None) -> bool:
    """Whether an error type is an Agentry LLM gateway's refusal (HTTP 402, e.g. `budget_exceeded`):
    a decision, not a fault, so the same call through the same gateway would be refused again."""
    return error_type in {r.value for r in RefusalType}


def is_retryable_status(status: int) -> bool:
    # 408 timeout, 409 (Anthropic uses it for transient conflicts), 429 rate limit, 5xx incl. 529.
    return status in (408, 409, 429) or status >= 500


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue  # an HTTP date; not worth parsing, the backoff policy applies instead
    return None


def is_transport_error(exc: BaseException) -> bool:
    """Connection resets and timeouts raised by an HTTP client while reading a stream."""
    root = type(exc).__module__.split(".")[0]
    return isinstance(exc, OSError | TimeoutError) or root in ("httpx", "httpx2", "httpcore", "h11")


class ChatProvider(Protocol):
    """One model at one endpoint. Implementations are async so an async gateway can share them.

    (Not to be confused with `agentry_common.models.Provider`, the enum of vendor wire flavours.)
    """

    @property
    def name(self) -> str:
        """Stable identity for events, e.g. "anthropic/claude-sonnet-4-5"."""
        ...

    @property
    def model(self) -> str: ...

    @property
    def endpoint(self) -> str:
        """The base URL in use ("default" for the provider's own); with `name`, it keys the breaker."""
        ...

    async def complete(self, request: ChatRequest, on_text: TextCallback | None = None) -> ChatResponse:
        """Make one streaming call; raise ProviderError on any failure. No internal retries."""
        ...

    async def aclose(self) -> None: ...
