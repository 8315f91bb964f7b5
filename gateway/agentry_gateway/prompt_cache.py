"""Prompt caching as the gateway budgets it: a call's marked prefixes, and which of them the provider
said it holds, so that a call is reserved what it may cost and no more (docs/governance.md,
"Prompt caching").

A request's breakpoints (`cache_control`, `llm.types.CacheMark`) mark prefixes: tools, then system,
then messages, up to each marked block. Without knowledge of the provider's cache, the worst case
is that each part up to the last breakpoint is written (1.25x the input rate for 5 minutes, 2x for
an hour). After an answered call whose provider read or wrote its cache, `CacheMemory` remembers the
digest of its last marked prefix with the number of tokens the provider reported cached (read +
written: exactly the tokens through the last breakpoint it cached, never more than through the last
one), until that breakpoint's TTL runs out. A later call of the same Execution that marks the same
prefix reads at least those tokens: they are estimated at the read rate. The memory is per gateway
pod; a call another pod served is estimated at the worst case.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from agentry_common.pricing import Price
from agentry_llm import ChatRequest, TextBlock, TokenUsage, ToolResultBlock, ToolUseBlock
from agentry_llm.types import Block, CacheMark

from .budgets import BYTES_PER_TOKEN_ESTIMATE, Amount, estimate_call

TTL_SECONDS: Final = {"5m": 300.0, "1h": 3600.0}
# A remembered prefix is trusted only while this much of its TTL is left: the next call's request
# reaches the provider a moment after it is admitted.
TTL_MARGIN_SECONDS: Final = 30.0
MAX_REMEMBERED: Final = 50_000  # prefixes per pod (oldest forgotten first): ~15 MB at most


@dataclass(frozen=True)
class Prefix:
    """The request up to and including one marked block."""

    tokens: int  # estimated like the request's input (bytes / BYTES_PER_TOKEN_ESTIMATE)
    ttl: str
    model: str  # whose cache: a provider caches per model
    digest: str  # of the model and the content up to the mark, marks left out


def _parts(chat: ChatRequest) -> Iterator[tuple[str, CacheMark | None]]:
    """The request's content in the cache's order, one part per tool and block, each led by its
    length (no two different sequences of parts read the same). Dicts appear as the client's JSON
    ordered them (`repr`): the same client sends the same order again."""
    for tool in chat.tools:
        yield _framed("tool", tool.name, tool.description, repr(tool.input_schema)), tool.cache
    system = [TextBlock(text=chat.system)] if isinstance(chat.system, str) else chat.system
    for text in system:
        yield _framed("system", text.text), text.cache
    for message in chat.messages:
        for block in message.content:
            yield _framed(message.role, *_block_fields(block)), block.cache


def _framed(*fields: str) -> str:
    return "".join(f"{len(f)}:{f}" for f in fields)


def _block_fields(block: Block) -> tuple[str, ...]:
    if isinstance(block, TextBlock):
        return ("text", block.text)
    if isinstance(block, ToolUseBlock):
        return ("tool_use", block.id, block.name, repr(block.input))
    assert isinstance(block, ToolResultBlock)
    return ("tool_result", block.tool_use_id, str(block.is_error), block.content)


def prefixes(model: str, chat: ChatRequest) -> list[Prefix]:
    """The request's marked prefixes, in order (none when nothing is marked: nothing is hashed)."""
    last = _last_mark(chat)
    if last < 0:
        return []
    digest = hashlib.sha256(_framed(model).encode())
    size, found, pending = 0, [], []
    for i, (text, mark) in enumerate(_parts(chat)):
        pending.append(text)
        if mark is not None:  # one encode and one hash update per breakpoint, not per block
            data = "".join(pending).encode()
            pending.clear()
            digest.update(data)
            size += len(data)
            tokens = math.ceil(size / BYTES_PER_TOKEN_ESTIMATE)
            found.append(Prefix(tokens, mark.ttl, model, digest.copy().hexdigest()))
        if i >= last:
            break
    return found


def _last_mark(chat: ChatRequest) -> int:
    """The index of the last marked part of `_parts` (-1: none)."""
    return max((i for i, mark in enumerate(_marks(chat)) if mark is not None), default=-1)


def _marks(chat: ChatRequest) -> Iterator[CacheMark | None]:
    """The breakpoints of `_parts`, without building their bytes."""
    yield from (t.cache for t in chat.tools)
    if isinstance(chat.system, str):
        yield None
    else:
        yield from (b.cache for b in chat.system)
    yield from (b.cache for m in chat.messages for b in m.content)


def unmarked(chat: ChatRequest) -> ChatRequest:
    """The request without breakpoints (a hop whose channel caches by itself and takes none)."""
    return chat.model_copy(
        update={
            "tools": [t.model_copy(update={"cache": None}) for t in chat.tools],
            "system": chat.system_text(),
            "messages": [
                m.model_copy(update={"content": [b.model_copy(update={"cache": None}) for b in m.content]})
                for m in chat.messages
            ],
        }
    )


def breakpoints(found: list[Prefix]) -> list[tuple[int, str]]:
    return [(p.tokens, p.ttl) for p in found]


class CacheMemory:
    """Which marked prefixes the provider reported cached, per Execution (or user), until their TTL."""

    def __init__(self, clock: Callable[[], float] = time.time, max_entries: int = MAX_REMEMBERED) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._seen: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def cached_tokens(self, key: str, found: list[Prefix]) -> int:
        """Tokens of the request's prefix the provider still holds (0: none known)."""
        now, best = self.clock(), 0
        for prefix in found:
            entry = self._seen.get((key, prefix.digest))
            if entry is not None and entry[1] > now:
                best = max(best, entry[0])
        return best

    def remember(self, key: str, found: list[Prefix], usage: TokenUsage, started: float) -> None:
        """After an answered call (`started`: when it was admitted) that marked `found`."""
        cached = usage.cache_read_tokens + usage.cache_write_tokens
        if not found or cached <= 0:
            return
        last = found[-1]
        entry = (key, last.digest)
        self._seen[entry] = (cached, started + TTL_SECONDS[last.ttl] - TTL_MARGIN_SECONDS)
        self._seen.move_to_end(entry)
        now = self.clock()
        while self._seen and (
            len(self._seen) > self.max_entries or next(iter(self._seen.values()))[1] <= now
        ):
            self._seen.popitem(last=False)  # the least recently remembered: over the cap, or expired

    def estimate(
        self, key: str, model: str, chat: ChatRequest, request_bytes: int, default: Price | None
    ) -> tuple[list[Prefix], Amount]:
        """The call's marked prefixes and its worst case: what is known cached at the read rate, the
        rest of each marked prefix at its write rate, the remainder at the input rate."""
        found = prefixes(model, chat)
        cached = self.cached_tokens(key, found) if found else 0
        amount = estimate_call(
            model, request_bytes, chat.max_tokens, default, breakpoints=breakpoints(found), cached=cached
        )
        return found, amount
