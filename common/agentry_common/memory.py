"""Memory across runs: the contract between the runtime (the `memory` tool), the LLM gateway (which
stores each Agent's memory), the operator (which scopes run tokens to it and drops it with the Agent)
and the API (which shows and edits it). docs/runs.md, "Memory across runs".

A store belongs to one Agent, by its uid: a re-created Agent of the same name has a new uid and never
sees the old store. A run token reaches its Agent's store only when it carries the `mem` claim (the
operator mints it when spec.memory.enabled), with `memn` the most entries the store may hold.

Pure module: standard library and pydantic only.
"""

from __future__ import annotations

import re
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# -- HTTP (the gateway's routes) ------------------------------------------------------------------------

# Run token: GET lists the entries (`?q=` searches keys and values), GET/PUT/DELETE one entry.
MEMORY_PATH: Final = "/v1/agentry/memory"
MEMORY_KEY_PATH: Final = "/v1/agentry/memory/{key}"
# Service token (the API, the operator): one Agent's store, by namespace and Agent uid.
MEMORY_STORES_PATH: Final = "/v1/agentry/memories"  # GET: every store (the operator's sweep)
MEMORY_STORE_PATH: Final = "/v1/agentry/memories/{namespace}/{agent_uid}"
MEMORY_STORE_KEY_PATH: Final = "/v1/agentry/memories/{namespace}/{agent_uid}/{key}"
MEMORY_DROP_PATH: Final = "/v1/agentry/memories/drop"  # POST: whole stores deleted (Agents gone)
# Firestore: `agentMemories/{namespace}.{agentUid}` (the head) and its `entries/{key}` subcollection.
MEMORY_COLLECTION: Final = "agentMemories"

# -- limits (the gateway enforces them) -----------------------------------------------------------------

KEY_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,127}$"  # a slug: a Firestore document id as it is
MAX_KEY_CHARS: Final = 128
MAX_VALUE_BYTES: Final = 4096  # UTF-8; above it a write is refused (413)
MAX_ENTRIES_CEILING: Final = 1000  # spec.memory.maxEntries' own bound, whatever a token claims
DEFAULT_MAX_ENTRIES: Final = 100
MAX_QUERY_CHARS: Final = 200
MAX_SEARCH_RESULTS: Final = 20
MAX_DROP: Final = 500  # stores per drop request

# -- the pod's environment (set by the operator when spec.memory.enabled and the gateway is on) ----------

ENV_MEMORY_URL: Final = "AGENTRY_MEMORY_URL"  # the gateway's base URL; unset: no memory tool
TOOL_NAME: Final = "memory"
# The webhook's refusal (and an Agent's Ready condition) when the installation has no gateway.
NEEDS_GATEWAY: Final = (
    "spec.memory.enabled: an Agent's memory is kept by the LLM gateway, and this installation has none "
    "(AGENTRY_GATEWAY_URL): set it to false, or install the gateway"
)

_KEY = re.compile(KEY_PATTERN)


def key_problem(key: str) -> str | None:
    """Why `key` is not a memory key, or None."""
    if _KEY.fullmatch(key):
        return None
    return (
        f"{key[:40]!r} is not a memory key: 1-{MAX_KEY_CHARS} characters of a-z, 0-9, '.', '_', '-', "
        "starting with a letter or digit"
    )


def value_problem(value: str) -> str | None:
    size = len(value.encode())
    return f"{size} bytes; at most {MAX_VALUE_BYTES}" if size > MAX_VALUE_BYTES else None


def store_limit(claimed: int) -> int:
    """The entries a store may hold: the token's (or the Agent's) limit within the ceiling."""
    return max(1, min(claimed or DEFAULT_MAX_ENTRIES, MAX_ENTRIES_CEILING))


def matches(query: str, key: str, value: str) -> bool:
    """Search: every word of the query in the key or the value, case-insensitive."""
    hay = f"{key}\n{value}".casefold()
    return all(word in hay for word in query.casefold().split())


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)


class MemoryEntry(_Wire):
    key: str = Field(pattern=KEY_PATTERN)
    value: str
    updated_at: str = Field(description="RFC 3339, UTC")
    updated_by: str = Field(description="the Execution that wrote it, or `user:<id>` for a person")


class MemoryWrite(_Wire):
    value: str = Field(description=f"text, at most {MAX_VALUE_BYTES} bytes (UTF-8)")
    # Service writes (the API) name who wrote and the Agent's limit; a run token's claims say both.
    updated_by: str | None = Field(default=None, max_length=200)
    max_entries: int | None = Field(default=None, ge=1, le=MAX_ENTRIES_CEILING)
    agent: str | None = Field(default=None, max_length=253)


class MemoryList(_Wire):
    entries: list[MemoryEntry]
    count: int = Field(description="entries in the store (a search returns fewer)")
    max_entries: int | None = None


class StoreRef(_Wire):
    namespace: str = Field(min_length=1, max_length=63)
    agent_uid: str = Field(min_length=1, max_length=128)
    agent: str = Field(default="", max_length=253)


class StoreList(_Wire):
    stores: list[StoreRef]


class DropRequest(_Wire):
    stores: list[StoreRef] = Field(max_length=MAX_DROP)


class DropAnswer(_Wire):
    dropped: int
