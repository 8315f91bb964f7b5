"""The agent designer's LLM: one model through the shared provider layer (`agentry_llm`).

The designer asks for a whole answer (no streaming to the browser); the provider streams from the
Messages API, and a call that fails for a passing reason (429, 5xx, connection) is tried again up
to twice, with the layer's backoff. The model is `AGENTRY_CHAT_MODEL` at `ANTHROPIC_BASE_URL` (the
provider's default when unset) with `ANTHROPIC_API_KEY`.

The LLM gateway is not a drop-in endpoint here: its `/v1/messages` admits run tokens only (one per
Execution, docs/governance.md), and the API has no token of that kind for the designer.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from agentry_common.models import ModelRef
from agentry_common.models import Provider as ProviderKind
from agentry_llm import (
    ChatProvider,
    ChatRequest,
    ChatResponse,
    Message,
    ProviderError,
    RetryPolicy,
    TextBlock,
    build_provider,
)

from .settings import Settings

LLM_REQUIRED_MESSAGE = (
    "LLM_REQUIRED: no language model is configured for the chat designer. Set ANTHROPIC_API_KEY "
    "(and ANTHROPIC_BASE_URL for a gateway or local endpoint) on the API server and restart it. "
    "You can still create agents with the form."
)
TIMEOUT_SECONDS = 60.0
# Three tries in all, waits like the SDK's own retries (0.5 s doubling, at most 8 s).
RETRIES = RetryPolicy(attempts=3, initial=0.5, maximum=8.0)


class LLMError(Exception):
    """The model could not answer (after retries); the message is safe to show."""


class LLM(Protocol):
    model: str

    async def complete(self, system: str, messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
        """The assistant's text and token usage ({inputTokens, outputTokens})."""
        ...


def _plain(exc: ProviderError) -> str:
    if exc.status == 401:
        return "the LLM provider refused the API key (401); check ANTHROPIC_API_KEY"
    if exc.final:
        return f"the LLM gateway refused the call: {exc.message}"[:300]
    if exc.status is not None:
        return f"the LLM provider answered {exc.status}; try again later"
    return "the LLM provider cannot be reached; try again later"


class ProviderLLM:
    """`LLM` on an `agentry_llm.ChatProvider`."""

    def __init__(self, provider: ChatProvider, max_tokens: int, policy: RetryPolicy = RETRIES) -> None:
        self.provider, self.max_tokens, self.policy = provider, max_tokens, policy
        self.model = provider.model

    async def complete(self, system: str, messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
        request = ChatRequest(
            system=system,
            messages=[Message(role=m["role"], content=[TextBlock(text=m["content"])]) for m in messages],
            max_tokens=self.max_tokens,
        )
        reply = await self._answer(request)
        usage = {"inputTokens": reply.usage.input_tokens, "outputTokens": reply.usage.output_tokens}
        return reply.message.text(), usage

    async def _answer(self, request: ChatRequest) -> ChatResponse:
        attempt = 1
        while True:
            try:
                return await self.provider.complete(request)
            except ProviderError as exc:
                if not exc.retryable or attempt >= self.policy.attempts:
                    raise LLMError(_plain(exc)) from exc
                await asyncio.sleep(self.policy.wait(attempt, exc.retry_after))
                attempt += 1

    async def aclose(self) -> None:
        await self.provider.aclose()


def llm_from_settings(settings: Settings) -> ProviderLLM | None:
    key = settings.anthropic_api_key.get_secret_value().strip() if settings.anthropic_api_key else ""
    if not key:  # blank counts as unset (the provider layer refuses a blank key)
        return None
    env = {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": settings.anthropic_base_url or ""}
    ref = ModelRef(provider=ProviderKind.ANTHROPIC, name=settings.chat_model)
    return ProviderLLM(build_provider(ref, env, timeout=TIMEOUT_SECONDS), settings.chat_max_tokens)
