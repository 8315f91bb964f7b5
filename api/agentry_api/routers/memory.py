"""/api/agents/{id}/memory: an agent's memory across runs, for its owner (docs/runs.md, "Memory
across runs"). 404 for an agent that is not the caller's, 409 while its memory is off."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from agentry_common.memory import KEY_PATTERN

from ..deps import CurrentUser, StateDep
from ..schemas.memory import MemoryEntryOut, MemoryOut, MemoryValueIn
from ..services.memory import AgentMemory

router = APIRouter(prefix="/api/agents/{agent_id}/memory", tags=["memory"])

Key = Annotated[
    str,
    Path(
        pattern=KEY_PATTERN,
        description="1-128 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit.",
    ),
]


@router.get("", response_model=MemoryOut)
async def get_memory(agent_id: str, user: CurrentUser, state: StateDep) -> MemoryOut:
    """Every entry of the agent's memory, by key, with who wrote it and when."""
    memory = await AgentMemory.of(state.agents, state.cluster, state.settings, user, agent_id)
    got = await memory.entries()
    return MemoryOut(
        enabled=True,
        maxEntries=memory.spec.max_entries,
        count=got.count,
        entries=[MemoryEntryOut.model_validate(e.wire()) for e in got.entries],
    )


@router.put("/{key}", response_model=MemoryEntryOut)
async def put_memory(
    agent_id: str, key: Key, body: MemoryValueIn, user: CurrentUser, state: StateDep
) -> MemoryEntryOut:
    """Write (or replace) one entry; 409 for a new key when the memory holds spec.memory.maxEntries."""
    memory = await AgentMemory.of(state.agents, state.cluster, state.settings, user, agent_id)
    return MemoryEntryOut.model_validate((await memory.put(user, key, body.value)).wire())


@router.delete("/{key}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_memory(agent_id: str, key: Key, user: CurrentUser, state: StateDep) -> Response:
    memory = await AgentMemory.of(state.agents, state.cluster, state.settings, user, agent_id)
    await memory.delete(key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
