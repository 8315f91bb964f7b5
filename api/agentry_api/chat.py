"""The chat designer's LLM, behind a small interface.

`AnthropicLLM` is a thin adapter on the `anthropic` SDK (Messages API, non-streaming) whose base URL
comes from the environment (ANTHROPIC_BASE_URL), so a gateway or a local test server can stand in.
It is meant to be replaced by the runtime's provider code (workspace_image/agentry_workspace) once
that is stable; only `LLM.complete` is used by the designer.
"""

from __future__ import annotations

from typing import Any, Protocol

import anthropic

from .settings import Settings

LLM_REQUIRED_MESSAGE = (
    "LLM_REQUIRED: no language model is configured for the chat designer. Set ANTHROPIC_API_KEY "
    "(and ANTHROPIC_BASE_URL for a gateway or local endpoint) on the API server and restart it. "
    "You can still create agents with the form."
)


class LLMError(Exception):
    """The model could not answer (after the SDK's retries); the message is safe to show."""


class LLM(Protocol):
    model: str

    async def complete(self, system: str, messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
        """The assistant's text and token usage ({inputTokens, outputTokens})."""
        ...


class AnthropicLLM:
    def __init__(self, api_key: str, base_url: str | None, model: str, max_tokens: int) -> None:
        self.model = model
        self.max_tokens = max_tokens
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=2, timeout=60)

    async def complete(self, system: str, messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
        try:
            reply = await self._client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=system,
                messages=messages,  # type: ignore[arg-type]
            )
        except anthropic.AuthenticationError as exc:
            raise LLMError("the LLM provider refused the API key (401); check ANTHROPIC_API_KEY") from exc
        except anthropic.APIStatusError as exc:
            raise LLMError(f"the LLM provider answered {exc.status_code}; try again later") from exc
        except anthropic.APIConnectionError as exc:
            raise LLMError("the LLM provider cannot be reached; try again later") from exc
        text = "".join(block.text for block in reply.content if block.type == "text")
        usage = {"inputTokens": reply.usage.input_tokens, "outputTokens": reply.usage.output_tokens}
        return text, usage


def llm_from_settings(settings: Settings) -> LLM | None:
    if settings.anthropic_api_key is None or not settings.anthropic_api_key.get_secret_value():
        return None
    return AnthropicLLM(
        settings.anthropic_api_key.get_secret_value(),
        settings.anthropic_base_url,
        settings.chat_model,
        settings.chat_max_tokens,
    )
