"""`memory`: what the Agent keeps across its runs (agentry_common.memory; docs/runs.md, "Memory across
runs"). Offered only when the operator gave the run a memory store (ENV_MEMORY_URL with the run
token: the Agent's spec.memory.enabled and the LLM gateway on). The gateway keeps the store; this
tool reaches it with the run token, like the checkpoint journal.

Reading, searching and listing change nothing (GREEN, idempotent: run again on resume); writing and
deleting change what later runs see (YELLOW). A value passes the run's redaction step before it is
sent: a secret's value never reaches the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Literal

import httpx
from pydantic import Field

from agentry_common.memory import (
    ENV_MEMORY_URL,
    MAX_QUERY_CHARS,
    MAX_VALUE_BYTES,
    MEMORY_KEY_PATH,
    MEMORY_PATH,
    TOOL_NAME,
    MemoryEntry,
    MemoryList,
    key_problem,
)
from agentry_common.models import Risk
from agentry_llm.types import ToolSpec

from .base import Assessment, ToolArgs, ToolContext, ToolInputError, ToolOutcome, one_line, parse_args

Action = Literal["read", "write", "search", "delete", "list"]
READS: frozenset[str] = frozenset({"read", "search", "list"})
TIMEOUT = 30.0
ATTEMPTS = 3  # a gateway restart is brief; after that the model reads the error and decides


class MemoryArgs(ToolArgs):
    action: Action
    key: str | None = Field(default=None, max_length=128)
    value: str | None = None
    query: str | None = Field(default=None, max_length=MAX_QUERY_CHARS)


class MemoryTool:
    name = TOOL_NAME

    def __init__(
        self,
        base_url: str,
        token: str,
        redact: Callable[[str], str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.redact = redact
        self.transport = transport

    def spec(self, ctx: ToolContext) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=(
                "Your memory across runs of this agent: short notes that later runs can read. "
                "Actions: list (every key), search (query: words to find in keys and values), read "
                "(key), write (key, value: replaces the key's value), delete (key). Keys: 1-128 "
                f"characters of a-z, 0-9, '.', '_', '-'; values: text up to {MAX_VALUE_BYTES} bytes. "
                "Keep what helps later runs (preferences, facts learned, progress), never secrets."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["read", "write", "search", "delete", "list"]},
                    "key": {"type": "string"},
                    "value": {"type": "string"},
                    "query": {"type": "string"},
                },
                "required": ["action"],
            },
        )

    def assess(self, args: Mapping[str, Any], ctx: ToolContext) -> Assessment:
        return Assessment(Risk.GREEN if args.get("action") in READS else Risk.YELLOW)

    def idempotent(self, args: Mapping[str, Any]) -> bool:
        return args.get("action") in READS

    def describe(self, args: Mapping[str, Any]) -> str:
        action = str(args.get("action", ""))
        if action == "search":
            return f"search {one_line(str(args.get('query', '')), 80)}"
        if action == "write":
            return f"write {args.get('key')} = {one_line(str(args.get('value', '')), 100)}"
        return f"{action} {args.get('key') or ''}".strip()

    async def run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutcome:
        parsed = parse_args(MemoryArgs, args)
        if parsed.action in ("list", "search"):
            query = (parsed.query or "").strip()
            if parsed.action == "search" and not query:
                raise ToolInputError("invalid arguments: query: search needs words to find")
            params = {"q": query} if query else {}
            response = await self._send("GET", MEMORY_PATH, params=params)
            return self._listed(response, query)
        key = self._key(parsed)
        path = MEMORY_KEY_PATH.format(key=key)
        if parsed.action == "read":
            response = await self._send("GET", path)
            if response.status_code == 404:
                return ToolOutcome(f"no memory entry {key!r}", is_error=True)
            entry = self._ok(response, MemoryEntry)
            return ToolOutcome(entry.value, details={"key": key})
        if parsed.action == "delete":
            response = await self._send("DELETE", path)
            if response.status_code == 404:
                return ToolOutcome(f"no memory entry {key!r}", is_error=True)
            self._ok(response, None)
            return ToolOutcome(f"deleted {key}", details={"key": key})
        if parsed.value is None:
            raise ToolInputError("invalid arguments: value: write needs a value")
        value = self.redact(parsed.value)  # the run's redaction step, before it leaves the pod
        self._ok(await self._send("PUT", path, json={"value": value}), MemoryEntry)
        note = " (secrets redacted)" if value != parsed.value else ""
        return ToolOutcome(f"stored {key}{note}", details={"key": key})

    @staticmethod
    def _key(parsed: MemoryArgs) -> str:
        if not parsed.key:
            raise ToolInputError(f"invalid arguments: key: {parsed.action} needs a key")
        problem = key_problem(parsed.key)
        if problem:
            raise ToolInputError(f"invalid arguments: key: {problem}")
        return parsed.key

    def _listed(self, response: httpx.Response, query: str) -> ToolOutcome:
        got = self._ok(response, MemoryList)
        if not got.entries:
            found = f"nothing matches {query!r}" if query else "the memory is empty"
            return ToolOutcome(f"{found} ({got.count} entries)", details={"count": got.count})
        lines = [f"{e.key}: {e.value}" for e in got.entries]
        head = f"{len(got.entries)} of {got.count} entries"
        if got.max_entries:
            head += f" (at most {got.max_entries})"
        return ToolOutcome("\n".join([head, *lines]), details={"count": got.count})

    def _ok(self, response: httpx.Response, model: Any) -> Any:
        """The answer's body as `model`, or an error the model reads (the gateway's reason)."""
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:300]
            raise _Refused(f"memory refused (HTTP {response.status_code}): {detail}")
        return model.model_validate(response.json()) if model is not None else None

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {self.token}"},
            timeout=TIMEOUT,
            transport=self.transport,
            verify=self.base_url.startswith("https://"),
        ) as client:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    response = await client.request(method, path, **kwargs)
                except httpx.HTTPError as exc:
                    if attempt == ATTEMPTS:
                        raise _Refused(f"the memory store cannot be reached: {type(exc).__name__}") from None
                else:
                    if response.status_code < 500 or attempt == ATTEMPTS:
                        return response
                await asyncio.sleep(0.5 * attempt)
        raise AssertionError("unreachable")


class _Refused(ToolInputError):
    """The store's refusal or absence, as a result the model can read (toolrun reports it)."""


def memory_tool(
    env: Mapping[str, str], token_envs: tuple[str, ...], redact: Callable[[str], str]
) -> MemoryTool | None:
    """The tool when the operator gave the run a memory store, else None."""
    url = env.get(ENV_MEMORY_URL, "").strip()
    token = next((v for name in token_envs if (v := env.get(name, "").strip())), "")
    if not url or not token:
        return None
    return MemoryTool(url, token, redact)
