"""The API processes' registry of wake-up addresses (`apiPeers`): one document per running process,
renewed by its heartbeat; a process that died without deleting its own is ignored once it expires and
deleted by the next reader."""

from __future__ import annotations

import time

from agentry_common.records import Collection

from .base import StoreBase

PEERS = Collection.API_PEERS


class PeerStore(StoreBase):
    async def register_peer(self, peer_id: str, host: str, port: int, ttl: float) -> None:
        doc = {"host": host, "port": port, "expiresAt": time.time() + ttl}
        await self.db.collection(PEERS).document(peer_id).set(doc)

    async def drop_peer(self, peer_id: str) -> None:
        await self.db.collection(PEERS).document(peer_id).delete()

    async def live_peers(self) -> dict[str, tuple[str, int]]:
        """Each unexpired process's (host, port), by id; expired documents are deleted on the way."""
        now = time.time()
        peers: dict[str, tuple[str, int]] = {}
        async for snap in self.db.collection(PEERS).stream():
            doc = snap.to_dict() or {}
            host, port, expires = doc.get("host"), doc.get("port"), doc.get("expiresAt")
            if not isinstance(expires, int | float) or expires < now:
                await snap.reference.delete()
            elif isinstance(host, str) and isinstance(port, int):
                peers[snap.id] = (host, port)
        return peers
