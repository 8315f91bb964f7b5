"""Agent memory stores go with their Agents (agentry_common.memory; docs/runs.md, "Memory across
runs"). The LLM gateway keeps them by the Agent's uid: the operator asks it to drop an Agent's store
when it sees the Agent deleted, and a sweep drops every store whose Agent is gone (deleted while the
operator was away, or a drop the gateway could not take), so nothing depends on a finalizer. A store
of an Agent re-created under the same name is gone too: the new Agent has another uid."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from lightkube import ApiError, AsyncClient

from .. import kube
from ..builders.follow_up import text
from .state import Logger, State


async def drop_agent_memory(state: State, agent: Mapping[str, object], logger: Logger) -> None:
    """A deleted Agent's store; nothing without the gateway."""
    namespace, uid = text(agent, "metadata", "namespace"), text(agent, "metadata", "uid")
    if state.governance is not None and namespace and uid:
        await state.governance.drop_memories([(namespace, uid)])


async def sweep_memories(client: AsyncClient, state: State, logger: Logger) -> int:
    """Drop the stores whose Agent no longer exists (by name and uid); how many. An Agent this
    operator cannot read (another installation's namespace) keeps its store."""
    if state.governance is None:
        return 0
    stores = await state.governance.memory_stores()
    gone = []
    for ref in stores or []:
        known = state.agents.get((ref.namespace, ref.agent))
        if not ref.agent or (known is not None and text(known, "metadata", "uid") == ref.agent_uid):
            continue
        try:
            agent = await kube.get_or_none(client, kube.Agent, ref.agent, ref.namespace)
        except ApiError:
            continue
        if agent is None or text(agent, "metadata", "uid") != ref.agent_uid:
            gone.append((ref.namespace, ref.agent_uid))
    if gone and await state.governance.drop_memories(gone):
        logger.info("dropped the memory stores of %d deleted agent(s)", len(gone))
    return len(gone)


async def memory_sweep_loop(client: AsyncClient, state: State, every: float, logger: Logger) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await sweep_memories(client, state, logger)
        except Exception as exc:  # keep the loop alive; the next sweep tries again
            logger.warning("the memory sweep failed: %s", exc)
