"""The agent designer's LLM: one model through the shared provider layer (`agentry_llm`).

The designer asks for a whole answer (no streaming to the browser); the provider streams from the
Messages API, and a call that fails for a passing reason (429, 5xx, connection) is tried again up
to twice, with the layer's backoff. The model is `AGENTRY_CHAT_MODEL`.

Two ways to reach it (`llm_from_settings`):

* **Through the LLM gateway** (`GatewayLLM`; `AGENTRY_GATEWAY_URL` and the token keys set, as the
  chart does with `gateway.enabled`): every turn mints a short-lived **user token**
  (`agentry_common.tokens.mint_user_token`: the person's owner label, purpose `designer`, the API's
  namespace, the chat model only) and calls the gateway's `/v1/messages` with it, so the call is
  metered (`llmCalls`, agent `designer`) and budgeted like the person's runs; a budget refusal (402
  `budget_exceeded`) is final and shown as such. The API holds no provider key.
* **Directly** (`ProviderLLM`, no gateway configured): `ANTHROPIC_API_KEY` at `ANTHROPIC_BASE_URL`
  (the provider's default when unset); unmetered.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from agentry_common.models import ModelRef
from agentry_common.models import Provider as ProviderKind
from agentry_common.tokens import DESIGNER, Keyring, mint_user_token
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
    "LLM_REQUIRED: no language model is configured for the chat designer. Set AGENTRY_GATEWAY_URL "
    "and the token keys (the Helm chart does with gateway.enabled), or ANTHROPIC_API_KEY (and "
    "ANTHROPIC_BASE_URL for a local endpoint), on the API server and restart it. "
    "You can still create agents with the form."
)
TIMEOUT_SECONDS = 60.0
# Three tries in all, waits like the SDK's own retries (0.5 s doubling, at most 8 s).
RETRIES = RetryPolicy(attempts=3, initial=0.5, maximum=8.0)


class LLMError(Exception):
    """The model could not answer (after retries); the message is safe to show."""


class LLM(Protocol):
    model: str

    async def complete(
        self, system: str, messages: list[dict[str, Any]], *, owner: str
    ) -> tuple[str, dict[str, int]]:
        """The assistant's text and token usage ({inputTokens, outputTokens}). `owner`: the asking
        person's budget subject (the owner label of their agents), charged through the gateway."""
        ...


def _plain(exc: ProviderError, via_gateway: bool = False) -> str:
    if exc.status == 401 and via_gateway:
        return (
            "the LLM gateway refused the API's token (401); the API and the gateway must share the "
            "token keys (AGENTRY_TOKEN_KEYS_DIR)"
        )
    if exc.status == 401:
        return "the LLM provider refused the API key (401); check ANTHROPIC_API_KEY"
    if exc.final:
        return f"the LLM gateway refused the call: {exc.message}"[:300]
    if via_gateway and exc.status is not None:  # the gateway's own words: never internals
        return f"the LLM gateway answered {exc.status}: {exc.message}"[:300]
    if exc.status is not None:
        return f"the LLM provider answered {exc.status}; try again later"
    return "the LLM provider cannot be reached; try again later"


class ProviderLLM:
    """`LLM` on an `agentry_llm.ChatProvider` (its key is the API's own: `owner` is not used)."""

    def __init__(
        self,
        provider: ChatProvider,
        max_tokens: int,
        policy: RetryPolicy = RETRIES,
        via_gateway: bool = False,
    ) -> None:
        self.provider, self.max_tokens, self.policy = provider, max_tokens, policy
        self.via_gateway = via_gateway
        self.model = provider.model

    async def complete(
        self, system: str, messages: list[dict[str, Any]], *, owner: str = ""
    ) -> tuple[str, dict[str, int]]:
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
                    raise LLMError(_plain(exc, self.via_gateway)) from exc
                await asyncio.sleep(self.policy.wait(attempt, exc.retry_after))
                attempt += 1

    async def aclose(self) -> None:
        await self.provider.aclose()


class GatewayLLM:
    """`LLM` through the LLM gateway: each turn with a user token of its own (minted here, valid for
    `USER_TOKEN_TTL_SECONDS`), naming the person who asks, so the gateway charges them."""

    def __init__(
        self,
        gateway_url: str,
        keyring: Keyring,
        namespace: str,
        model: str,
        max_tokens: int,
        policy: RetryPolicy = RETRIES,
    ) -> None:
        self.base_url = gateway_url.rstrip("/")  # the Anthropic protocol: <gateway>/v1/messages
        self.keyring, self.namespace, self.model = keyring, namespace, model
        self.max_tokens, self.policy = max_tokens, policy

    def token(self, owner: str) -> str:
        return mint_user_token(
            self.keyring, user=owner, namespace=self.namespace, purpose=DESIGNER, models=(self.model,)
        )

    async def complete(
        self, system: str, messages: list[dict[str, Any]], *, owner: str
    ) -> tuple[str, dict[str, int]]:
        ref = ModelRef(provider=ProviderKind.ANTHROPIC, name=self.model, base_url=self.base_url)
        provider = build_provider(ref, {"ANTHROPIC_API_KEY": self.token(owner)}, timeout=TIMEOUT_SECONDS)
        try:
            turn = ProviderLLM(provider, self.max_tokens, self.policy, via_gateway=True)
            return await turn.complete(system, messages)
        finally:
            await provider.aclose()


def llm_from_settings(settings: Settings) -> ProviderLLM | GatewayLLM | None:
    """The gateway when `AGENTRY_GATEWAY_URL` is set (then the token keys are required: ValueError
    says what to set), else the API's own `ANTHROPIC_API_KEY`, else None (LLM_REQUIRED)."""
    if settings.gateway_url:
        keys = settings.token_keys.get_secret_value() if settings.token_keys else None
        try:
            keyring = Keyring.from_settings(settings.token_keys_dir, keys, settings.token_kid)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"AGENTRY_GATEWAY_URL is set, so the designer needs the token keys: {exc}"
            ) from exc
        return GatewayLLM(
            settings.gateway_url, keyring, settings.namespace, settings.chat_model, settings.chat_max_tokens
        )
    key = settings.anthropic_api_key.get_secret_value().strip() if settings.anthropic_api_key else ""
    if not key:  # blank counts as unset (the provider layer refuses a blank key)
        return None
    env = {"ANTHROPIC_API_KEY": key, "ANTHROPIC_BASE_URL": settings.anthropic_base_url or ""}
    ref = ModelRef(provider=ProviderKind.ANTHROPIC, name=settings.chat_model)
    return ProviderLLM(build_provider(ref, env, timeout=TIMEOUT_SECONDS), settings.chat_max_tokens)
