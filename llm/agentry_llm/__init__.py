"""LLM providers behind one small async interface, with retries, breakers and fallback.

Stands alone (imports nothing else from the runtime) so the API's async gateway can reuse it.
"""

from .base import Provider, ProviderError
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
    "ChatRequest",
    "ChatResponse",
    "Message",
    "MissingProviderKey",
    "Provider",
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
