"""Agents: one document per Agent CR, owned by a user (imported ones by `import_owner`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.cloud.firestore_v1.base_query import FieldFilter

from agentry_common.records import Collection

from .base import Doc, StoreBase

AGENTS = Collection.AGENTS


class AgentStore(StoreBase):
    async def agent(self, agent_id: str) -> Doc | None:
        """Unscoped read (the watcher and syncer); routes use `owned_agent`."""
        if not agent_id or "/" in agent_id:
            return None
        return await self._get(AGENTS, agent_id)

    async def owned_agent(self, user_id: str, agent_id: str) -> Doc | None:
        return await self._owned(AGENTS, agent_id, user_id)

    async def create_agent(self, doc: Doc) -> None:
        await self.db.collection(AGENTS).document(doc["id"]).create(doc)

    async def put_agent(self, doc: Doc) -> None:
        await self.db.collection(AGENTS).document(doc["id"]).set(doc)

    async def update_agent(self, agent_id: str, fields: Doc) -> None:
        await self.db.collection(AGENTS).document(agent_id).update(fields)

    async def remove_agent(self, agent_id: str) -> None:
        await self.db.collection(AGENTS).document(agent_id).delete()

    async def list_agents(self, user_id: str) -> list[Doc]:
        q = self.db.collection(AGENTS).where(filter=FieldFilter("userId", "==", user_id))
        docs = [d.to_dict() or {} async for d in q.stream()]
        return sorted((d for d in docs if not d.get("deleted")), key=lambda d: d.get("createdAt", ""))

    async def all_agents(self) -> AsyncIterator[Doc]:
        """Every agent document of every user, streamed (the watcher's reconciliation)."""
        async for snap in self.db.collection(AGENTS).stream():
            yield snap.to_dict() or {}

    async def agents_pending_sync(self) -> list[Doc]:
        q = self.db.collection(AGENTS).where(filter=FieldFilter("sync.state", "==", "Pending"))
        return [d.to_dict() or {} async for d in q.stream()]
