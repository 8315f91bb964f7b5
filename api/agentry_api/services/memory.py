"""An Agent's memory, for its owner: the LLM gateway keeps each Agent's store by the Agent's uid
(agentry_common.memory); the API reads and edits the store of an agent the caller owns, with a
service token, and never another's."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from agentry_common.memory import (
    MEMORY_STORE_KEY_PATH,
    MEMORY_STORE_PATH,
    MemoryEntry,
    MemoryList,
    MemoryWrite,
)
from agentry_common.models import MemorySpec
from agentry_common.tls import client_context
from agentry_common.tokens import Keyring, mint_service_token

from ..auth import User
from ..cluster import Cluster, ClusterUnavailable
from ..settings import Settings
from .agents import AgentService
from .errors import Conflict, NotFound, Unavailable

log = logging.getLogger("agentry.api.memory")

TIMEOUT_SECONDS = 10.0


class AgentMemory:
    """One agent's store: resolved for its owner (404 otherwise), 409 while memory is off."""

    def __init__(self, settings: Settings, agent_id: str, spec: MemorySpec, uid: str) -> None:
        self.settings, self.agent_id, self.spec = settings, agent_id, spec
        self.namespace, self.uid = settings.namespace, uid
        self.store = MEMORY_STORE_PATH.format(namespace=self.namespace, agent_uid=uid)

    @classmethod
    async def of(
        cls, agents: AgentService, cluster: Cluster, settings: Settings, user: User, agent_id: str
    ) -> AgentMemory:
        doc = await agents.get(user, agent_id)  # NotFound: absent or not the caller's
        spec = MemorySpec.model_validate((doc.get("spec") or {}).get("memory") or {})
        if not spec.enabled:
            raise Conflict(f"agent {agent_id!r} keeps no memory: set spec.memory.enabled to true")
        if not settings.gateway_url:
            raise Conflict("memory needs the LLM gateway, and this installation has none")
        try:
            cr = await cluster.get_agent(agent_id)
        except ClusterUnavailable as exc:
            raise Unavailable("the cluster is unavailable; the agent's memory cannot be found now") from exc
        uid = str(((cr or {}).get("metadata") or {}).get("uid") or "")
        if not uid:
            raise Conflict(f"agent {agent_id!r} is not applied to the cluster yet: it has no memory yet")
        return cls(settings, agent_id, spec, uid)

    async def entries(self) -> MemoryList:
        return MemoryList.model_validate(self._ok(await self._send("GET", self.store)).json())

    async def put(self, user: User, key: str, value: str) -> MemoryEntry:
        body = MemoryWrite(
            value=value, updated_by=f"user:{user.id}", max_entries=self.spec.max_entries, agent=self.agent_id
        )
        response = await self._send("PUT", self._key(key), json=body.wire())
        return MemoryEntry.model_validate(self._ok(response, key).json())

    async def delete(self, key: str) -> None:
        self._ok(await self._send("DELETE", self._key(key)), key)

    def _key(self, key: str) -> str:
        return MEMORY_STORE_KEY_PATH.format(namespace=self.namespace, agent_uid=self.uid, key=key)

    def _ok(self, response: httpx.Response, key: str = "") -> httpx.Response:
        if response.status_code < 300:
            return response
        detail = _detail(response)
        if response.status_code == 404:
            raise NotFound(f"agent {self.agent_id!r} has no memory entry {key!r}")
        if response.status_code == 409:
            raise Conflict(detail)
        log.warning("memory: the gateway answered %s", response.status_code)
        if response.status_code in (401, 403):
            raise Unavailable("the LLM gateway refused the API's token: their token keys differ")
        raise Unavailable(f"the LLM gateway answered {response.status_code}; memory cannot be used now")

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        settings = self.settings
        keys = settings.token_keys.get_secret_value() if settings.token_keys else None
        try:
            keyring = Keyring.from_settings(settings.token_keys_dir, keys, settings.token_kid)
        except (OSError, ValueError) as exc:
            log.error("memory: no token keys to ask the gateway with: %s", exc)
            raise Unavailable("memory cannot be used: the API has no token keys for the LLM gateway") from exc
        token = mint_service_token(keyring, "agentry-api:memory", ttl_seconds=60)
        async with httpx.AsyncClient(
            base_url=str(settings.gateway_url).rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_SECONDS,
            verify=client_context(),
        ) as client:
            try:
                return await client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                log.warning("memory: the gateway does not answer: %s", type(exc).__name__)
                raise Unavailable("the LLM gateway does not answer; memory cannot be used now") from exc


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))[:500]
    except (ValueError, AttributeError):
        return response.text[:500]
