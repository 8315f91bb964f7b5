"""The providers' prompt caches as the scripted LLM (scripted_llm.py) serves them, so that tests and
benchmarks measure what a real provider would bill and how fast it would answer.

Token measure: about four characters of canonical JSON (sorted keys, `cache_control` left out) per
token, counted over what the provider reads as input: tools, system and messages on the Anthropic
wire; tools and messages on the OpenAI wire.

Anthropic Messages (docs.claude.com/en/docs/build-with-claude/prompt-caching):
- "Prompt caching ... caches the full prefix": tools, then system, then messages, up to and
  including the block that carries `cache_control` (a breakpoint); "Cache prefixes are created in
  the following order: tools, system, then messages".
- "Automatic prefix checking": at each breakpoint the cache is looked up at that block and up to
  20 blocks before it; the longest hit is read, the rest of each breakpoint's prefix is written.
- "Cache limitations": a prefix shorter than the model's minimum (agentry_common.pricing
  .cache_min_tokens) is processed without caching; "up to 4 cache breakpoints" (more: 400).
- "Cache lifetime" / "1-hour cache duration": an entry lives 5 minutes, or 1 hour with
  `"ttl": "1h"`, "refreshed for no additional cost each time the cached content is used"; "Mixing
  different TTLs": a 1-hour breakpoint must come before any 5-minute one (else 400).
- "Tracking cache performance": `input_tokens` is what follows the last cache read or write;
  `cache_creation_input_tokens` (split by TTL in `cache_creation`) and `cache_read_input_tokens`
  are the rest. Caches are per organisation (here: per API key) and per model.
OpenAI Chat Completions (platform.openai.com/docs/guides/prompt-caching):
- automatic for prompts of 1024 tokens or more, hits "in increments of 128 tokens" (0, 1024,
  1152, ...), reported as `usage.prompt_tokens_details.cached_tokens` within `prompt_tokens`;
  cached prefixes "remain active for 5 to 10 minutes of inactivity" (here: 5 minutes).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from agentry_common.pricing import CACHE_MAX_BREAKPOINTS, cache_min_tokens

from .scripted_wire import InputUsage

CHARS_PER_TOKEN: Final = 4
LOOKBACK_BLOCKS: Final = 20
TTL_SECONDS: Final[dict[str, float]] = {"5m": 300.0, "1h": 3600.0}
OPENAI_MIN_TOKENS: Final = 1024
OPENAI_STEP_TOKENS: Final = 128
OPENAI_RETENTION_SECONDS: Final = 300.0
OPENAI_ENTRIES: Final = 256  # prompts kept per key and model (the oldest go first)

Clock = Callable[[], float]


class ManualClock:
    """A clock that moves only when told to: TTL tests advance it instead of sleeping."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CacheError(ValueError):
    """A request the real API refuses (400 invalid_request_error) for its cache_control."""


def api_key(headers: dict[str, str]) -> str:
    """Whose cache: the caller's key (x-api-key, or a bearer token on the OpenAI wire)."""
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def tokens_of(chars: int) -> int:
    return chars // CHARS_PER_TOKEN


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content) if isinstance(content, list) else []


@dataclass(frozen=True)
class Piece:
    """One block of the cache's prefix order: its identity in a prefix, its size, its breakpoint."""

    key: str
    chars: int
    ttl: str | None


def _piece(place: str, block: Any) -> Piece:
    if not isinstance(block, dict):
        text = canonical(block)
        return Piece(canonical([place, text]), len(text), None)
    mark = block.get("cache_control")
    body = {k: v for k, v in block.items() if k != "cache_control"}
    text = canonical(body)
    ttl = None
    if mark is not None:
        if not isinstance(mark, dict) or mark.get("type") != "ephemeral":
            raise CacheError("cache_control: type must be 'ephemeral'")
        ttl = str(mark.get("ttl", "5m"))
        if ttl not in TTL_SECONDS:
            raise CacheError(f"cache_control.ttl: must be '5m' or '1h', got {ttl!r}")
    return Piece(canonical([place, text]), len(text), ttl)


def anthropic_pieces(request: dict[str, Any]) -> list[Piece]:
    """The request's blocks in the cache's order, checked as the API checks their breakpoints."""
    pieces = [_piece("tool", t) for t in request.get("tools") or []]
    pieces += [_piece("system", b) for b in _blocks(request.get("system"))]
    for message in request.get("messages") or []:
        role = str(message.get("role")) if isinstance(message, dict) else "?"
        content = message.get("content") if isinstance(message, dict) else None
        pieces += [_piece(role, b) for b in _blocks(content)]
    marks = [p.ttl for p in pieces if p.ttl is not None]
    if len(marks) > CACHE_MAX_BREAKPOINTS:
        raise CacheError(
            f"A maximum of {CACHE_MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {len(marks)}."
        )
    if "1h" in marks and "5m" in marks[: len(marks) - marks[::-1].index("1h")]:
        raise CacheError("cache_control: a ttl='1h' breakpoint must not come after a ttl='5m' one")
    return pieces


def anthropic_input_tokens(request: dict[str, Any]) -> int:
    return max(1, tokens_of(sum(p.chars for p in anthropic_pieces(request))))


@dataclass
class _Entry:
    tokens: int
    ttl: str
    expires: float


class AnthropicCache:
    """One organisation's prompt cache on the Messages API, per API key and model."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], _Entry] = {}  # (key, model, prefix hash)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def serve(self, request: dict[str, Any], api_key: str) -> InputUsage:
        """Read and write the cache as the API does for this request; its input usage."""
        pieces = anthropic_pieces(request)
        model = str(request.get("model", ""))
        hashes, tokens, digest, chars = [], [], hashlib.sha256(), 0
        for piece in pieces:
            digest.update(piece.key.encode())
            hashes.append((api_key, model, digest.copy().hexdigest()))
            chars += piece.chars
            tokens.append(tokens_of(chars))
        total = max(1, tokens_of(chars))
        marks = [i for i, p in enumerate(pieces) if p.ttl is not None]
        with self._lock:
            now = self._clock()
            self._entries = {k: e for k, e in self._entries.items() if e.expires > now}
            read = self._read(hashes, marks, now)
            minimum = cache_min_tokens(model)
            written = [i for i in marks if tokens[i] >= minimum and tokens[i] > read]
            for i in written:
                ttl = pieces[i].ttl or "5m"
                self._entries[hashes[i]] = _Entry(tokens[i], ttl, now + TTL_SECONDS[ttl])
        write_end = max((tokens[i] for i in written), default=read)
        write_1h_end = max((tokens[i] for i in written if pieces[i].ttl == "1h"), default=read)
        return InputUsage(total, read, write_end - read, write_1h_end - read)

    def _read(self, hashes: list[tuple[str, str, str]], marks: list[int], now: float) -> int:
        """The longest prefix found at a breakpoint or up to 20 blocks before it; every entry found
        is refreshed (used)."""
        read = 0
        for mark in marks:
            for j in range(mark, max(-1, mark - LOOKBACK_BLOCKS - 1), -1):
                entry = self._entries.get(hashes[j])
                if entry is not None:
                    entry.expires = now + TTL_SECONDS[entry.ttl]
                    read = max(read, entry.tokens)
                    break
        return read


def openai_prompt(request: dict[str, Any]) -> str:
    """The prompt as the cache sees it: tools, then messages, canonical JSON."""
    return "".join(canonical(v) for v in [*(request.get("tools") or []), *(request.get("messages") or [])])


def _common_prefix(a: str, b: str) -> int:
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # binary search on slices: compared in C, not a character at a time
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class OpenAICache:
    """Automatic prompt caching of the Chat Completions API, per API key and model."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._prompts: dict[tuple[str, str], dict[str, float]] = {}  # (key, model) -> prompt: last use

    def clear(self) -> None:
        with self._lock:
            self._prompts.clear()

    def serve(self, request: dict[str, Any], api_key: str) -> InputUsage:
        prompt = openai_prompt(request)
        total = max(1, tokens_of(len(prompt)))
        if total < OPENAI_MIN_TOKENS:
            return InputUsage(total)
        with self._lock:
            now = self._clock()
            scope = (api_key, str(request.get("model", "")))
            kept = {
                p: t for p, t in self._prompts.get(scope, {}).items() if now - t < OPENAI_RETENTION_SECONDS
            }
            best, matched = 0, None
            for earlier in kept:
                length = _common_prefix(prompt, earlier)
                if length > best:
                    best, matched = length, earlier
            if matched is not None:
                kept[matched] = now
            kept[prompt] = now
            newest = sorted(kept, key=kept.__getitem__)[-OPENAI_ENTRIES:]
            self._prompts[scope] = {p: kept[p] for p in newest}
        hit = tokens_of(best)
        cached = 0 if hit < OPENAI_MIN_TOKENS else hit - (hit - OPENAI_MIN_TOKENS) % OPENAI_STEP_TOKENS
        return InputUsage(total, cache_read_tokens=cached)


def prefill_seconds(usage: InputUsage, ms_per_1k: float) -> float:
    """Model time before the first byte: every input token not read from the cache is computed."""
    return (usage.input_tokens - usage.cache_read_tokens) * ms_per_1k / 1_000_000


def scripted_input(usage: dict[str, Any], estimate: Callable[[], InputUsage]) -> InputUsage:
    """A script item's usage, in the Messages API's words (`input_tokens` the uncached part, cache
    fields optional); `estimate` (the cache's answer) when it names no input tokens."""
    if "input_tokens" not in usage:
        return estimate()
    read = int(usage.get("cache_read_input_tokens", 0))
    write = int(usage.get("cache_creation_input_tokens", 0))
    write_1h = int((usage.get("cache_creation") or {}).get("ephemeral_1h_input_tokens", 0))
    return InputUsage(int(usage["input_tokens"]) + read + write, read, write, min(write_1h, write))
