"""LLM providers behind one small async interface, with retries, breakers and fallback.

Imports nothing from other Agentry packages but agentry_common, so the workspace runtime, the LLM
gateway and the API's designer build on it. `ChatProvider` is the interface.
"""

from .base import ChatProvider, ProviderError
from .factory import MissingProviderKey, build_chain_providers, build_provider, check_keys
from .resilience import (
    AsyncBreaker,
    BreakerOpen,
    BreakerRegistry,
    ChainStats,
    ProviderChain,
    ProvidersFailed,
    RetryPolicy,
)
from .types import (
    ChatRequest,
    ChatResponse,
    Message,
    TextBlock,
    TokenUsage,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
)

__all__ = [
    "AsyncBreaker",
    "BreakerOpen",
    "BreakerRegistry",
    "ChainStats",
    "ChatProvider",
    "ChatRequest",
    "ChatResponse",
    "Message",
    "MissingProviderKey",
    "ProviderChain",
    "ProviderError",
    "ProvidersFailed",
    "RetryPolicy",
    "TextBlock",
    "TokenUsage",
    "ToolChoice",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "build_chain_providers",
    "build_provider",
    "check_keys",
]
