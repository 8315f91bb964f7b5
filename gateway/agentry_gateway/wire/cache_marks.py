"""Prompt-cache breakpoints on the Anthropic wire: `cache_control` read and checked as the Messages
API checks it, and the cache usage fields its answers carry.

The rules (docs.anthropic.com, "Prompt caching"): `cache_control` is `{"type": "ephemeral"}` with an
optional `ttl` of "5m" (the default) or "1h"; a request carries at most 4 breakpoints
(`pricing.CACHE_MAX_BREAKPOINTS`), counted over tools, then system, then messages (the cache's
order); a breakpoint with the 1-hour TTL may not come after one with the 5-minute TTL.
"""

from __future__ import annotations

from typing import Any

from agentry_common.pricing import CACHE_MAX_BREAKPOINTS
from agentry_llm import ChatRequest, TokenUsage
from agentry_llm.types import CacheMark

from . import WireError

TTLS = ("5m", "1h")


def _bad(message: str) -> WireError:
    return WireError(400, "invalid_request_error", message)


def mark_of(raw: dict[str, Any], where: str) -> CacheMark | None:
    """The breakpoint an object (a block, a tool) carries, if any; 400 naming the field when invalid."""
    control = raw.get("cache_control")
    if control is None:
        return None
    field = f"{where}.cache_control"
    if not isinstance(control, dict):
        raise _bad(f"{field}: must be an object {{type: ephemeral, ttl?: 5m|1h}}")
    if control.get("type") != "ephemeral":
        raise _bad(f"{field}.type: must be 'ephemeral', got {control.get('type')!r}")
    ttl = control.get("ttl", "5m")
    if ttl not in TTLS:
        raise _bad(f"{field}.ttl: must be '5m' or '1h', got {ttl!r}")
    unknown = sorted(set(control) - {"type", "ttl"})
    if unknown:
        raise _bad(f"{field}.{unknown[0]}: unknown field")
    return CacheMark(ttl=ttl)


def marks(chat: ChatRequest) -> list[CacheMark]:
    """The request's breakpoints in the cache's order: tools, system, messages."""
    found = [t.cache for t in chat.tools if t.cache is not None]
    if not isinstance(chat.system, str):
        found += [b.cache for b in chat.system if b.cache is not None]
    found += [b.cache for m in chat.messages for b in m.content if b.cache is not None]
    return found


def check(chat: ChatRequest) -> None:
    """The request-wide rules: how many breakpoints, and longer TTLs first."""
    found = marks(chat)
    if len(found) > CACHE_MAX_BREAKPOINTS:
        raise _bad(
            f"cache_control: at most {CACHE_MAX_BREAKPOINTS} blocks may carry a breakpoint, got {len(found)}"
        )
    seen_5m = False
    for mark in found:
        if mark.ttl == "1h" and seen_5m:
            raise _bad(
                "cache_control.ttl: a breakpoint with ttl '1h' may not come after one with ttl '5m' "
                "(tools, then system, then messages)"
            )
        seen_5m = seen_5m or mark.ttl == "5m"


def anthropic_usage(usage: TokenUsage) -> dict[str, Any]:
    """A call's usage as the Messages API reports it: `input_tokens` is only the uncached part."""
    write_1h = min(usage.cache_write_1h_tokens, usage.cache_write_tokens)
    return {
        "input_tokens": usage.uncached_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cache_read_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": usage.cache_write_tokens - write_1h,
            "ephemeral_1h_input_tokens": write_1h,
        },
    }
