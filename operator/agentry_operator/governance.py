"""The LLM gateway's client of one operator process (AGENTRY_GATEWAY_URL set): admission questions,
run ends, and the run tokens minted with the keyring shared with the gateway (docs/governance.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from agentry_common.checkpoints import (
    CHECKPOINT_PRUNE_PATH,
    PrunedRun,
    PruneRequest,
    derive_state_key,
    parent_state_keys,
)
from agentry_common.governance import ADMISSION_PATH, RUN_END_PATH, RunEnd
from agentry_common.memory import (
    MAX_DROP,
    MEMORY_DROP_PATH,
    MEMORY_STORES_PATH,
    DropRequest,
    StoreList,
    StoreRef,
)
from agentry_common.models import AgentSpec
from agentry_common.tokens import Keyring, RunLimits, mint_run_token, mint_service_token

from .builders.follow_up import Parent
from .builders.governance import Answer, model_chain, owner_of, priority_of
from .builders.job import active_deadline_seconds
from .settings import Settings

log = logging.getLogger("agentry.operator.governance")

SERVICE_SUBJECT = "operator"
PRUNE_BATCH = 500  # PruneRequest.runs' bound


class Governance:
    """The admission client and the token keyring of one operator process."""

    def __init__(self, config: Settings, keyring: Keyring, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.keyring = keyring
        self.http = http or httpx.AsyncClient(
            base_url=config.gateway_base, timeout=config.admission_timeout_seconds
        )

    @classmethod
    def from_config(cls, config: Settings) -> Governance | None:
        """None when the gateway is off; ValueError (the operator does not start) without keys."""
        return cls(config, config.keyring()) if config.governed else None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def ask(self, body: Mapping[str, object]) -> Answer:
        """One admission call; never raises for the gateway's failures (they are an Answer too)."""
        token = mint_service_token(self.keyring, SERVICE_SUBJECT)
        try:
            response = await self.http.post(
                ADMISSION_PATH, json=body, headers={"authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            return Answer(problem=f"{self.config.gateway_base}: {type(exc).__name__}: {exc}".rstrip(": "))
        if response.status_code >= 500:
            return Answer(problem=f"HTTP {response.status_code}: {_detail(response)}")
        if response.status_code != 200:
            return Answer(problem=f"HTTP {response.status_code}: {_detail(response)}", unavailable=False)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return Answer(problem="the admission answer is not a JSON object", unavailable=False)
        return Answer(decision=data)

    async def end(self, execution: dict[str, Any]) -> None:
        """Tell the gateway the Execution is over, so its run tokens admit no more calls. Best effort:
        if the gateway cannot be told, a token still dies at its expiry (the Job's deadline + 600 s)."""
        meta = execution["metadata"]
        body = RunEnd(namespace=meta["namespace"], execution=meta["name"], uid=meta["uid"]).model_dump()
        token = mint_service_token(self.keyring, SERVICE_SUBJECT)
        try:
            response = await self.http.post(
                RUN_END_PATH, json=body, headers={"authorization": f"Bearer {token}"}
            )
        except httpx.HTTPError as exc:
            log.warning("could not end the run tokens of %s at the gateway: %s", meta["name"], exc)
            return
        if response.status_code != 200:
            log.warning(
                "could not end the run tokens of %s at the gateway: HTTP %s: %s",
                meta["name"],
                response.status_code,
                _detail(response),
            )

    def state_key(self, namespace: str, uid: str) -> str:
        """The key that signs a run's paused state and journal: derived from the ring's current key and
        the run's uid, so a follow-up can be given it (parent_keys) after the run's Secret is gone."""
        return derive_state_key(self.keyring.keys[self.keyring.current], namespace, uid)

    def parent_keys(self, namespace: str, parent: Parent) -> list[str]:
        """The keys the parent's journal may be signed with (one per ring key: rotation since)."""
        return parent_state_keys(self.keyring.keys.values(), namespace, parent.uid)

    async def prune(self, runs: Iterable[tuple[str, str]]) -> None:
        """Ask the gateway to drop the checkpoint journals of these runs (namespace, uid), in batches.
        Best effort: logged, never raises (a journal left behind is bounded and ages out with its run's
        history in the store's own retention)."""
        wanted = [PrunedRun(namespace=ns, uid=uid) for ns, uid in dict.fromkeys(runs) if ns and uid]
        for start in range(0, len(wanted), PRUNE_BATCH):
            batch = PruneRequest(runs=wanted[start : start + PRUNE_BATCH])
            token = mint_service_token(self.keyring, SERVICE_SUBJECT)
            try:
                response = await self.http.post(
                    CHECKPOINT_PRUNE_PATH, json=batch.wire(), headers={"authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                log.warning("could not prune %d checkpoint journals at the gateway: %s", len(batch.runs), exc)
                continue
            if response.status_code != 200:
                log.warning(
                    "could not prune %d checkpoint journals at the gateway: HTTP %s: %s",
                    len(batch.runs),
                    response.status_code,
                    _detail(response),
                )

    async def memory_stores(self) -> list[StoreRef] | None:
        """Every Agent memory store the gateway keeps; None when it cannot be asked (logged)."""
        token = mint_service_token(self.keyring, SERVICE_SUBJECT)
        try:
            response = await self.http.get(MEMORY_STORES_PATH, headers={"authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            log.warning("could not list the memory stores at the gateway: %s", exc)
            return None
        if response.status_code != 200:
            log.warning(
                "could not list the memory stores: HTTP %s: %s", response.status_code, _detail(response)
            )
            return None
        return StoreList.model_validate(response.json()).stores

    async def drop_memories(self, stores: Iterable[tuple[str, str]]) -> bool:
        """Ask the gateway to delete these Agents' memory stores (namespace, Agent uid). Best effort:
        False when it could not be told (logged); the operator's sweep tries again."""
        wanted = [StoreRef(namespace=ns, agent_uid=uid) for ns, uid in dict.fromkeys(stores) if ns and uid]
        for start in range(0, len(wanted), MAX_DROP):
            body = DropRequest(stores=wanted[start : start + MAX_DROP]).wire()
            token = mint_service_token(self.keyring, SERVICE_SUBJECT)
            try:
                response = await self.http.post(
                    MEMORY_DROP_PATH, json=body, headers={"authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                log.warning("could not drop %d memory stores at the gateway: %s", len(body["stores"]), exc)
                return False
            if response.status_code != 200:
                log.warning(
                    "could not drop memory stores: HTTP %s: %s", response.status_code, _detail(response)
                )
                return False
        return True

    def run_token(
        self,
        execution: dict[str, Any],
        agent: dict[str, Any],
        spec: AgentSpec | None = None,
        parent: Parent | None = None,
    ) -> str:
        """The run token of one Job: valid for the Job's deadline (+ margin), limits from spec.budget,
        the model chain from spec.model (`spec`: the Agent's effective spec parsed already, else it
        is parsed here); a follow-up's names its parent (whose journal it may read), and an Agent
        with spec.memory.enabled its memory store (agentry_common.memory)."""
        meta = execution["metadata"]
        spec = spec or AgentSpec.model_validate(agent["spec"])
        budget = spec.budget
        return mint_run_token(
            self.keyring,
            namespace=meta["namespace"],
            execution=meta["name"],
            execution_uid=meta["uid"],
            agent=agent["metadata"]["name"],
            user=owner_of(agent),
            priority=priority_of(execution, agent),
            active_deadline_seconds=active_deadline_seconds(spec),
            limits=RunLimits(tokens=budget.max_tokens_per_run, cost_usd=budget.max_cost_per_run_usd),
            models=model_chain(spec),
            parent=parent.name if parent else "",
            parent_uid=parent.uid if parent else "",
            # The Agent's memory store (by its uid: a re-created Agent's is another, empty one).
            memory=agent["metadata"].get("uid", "") if spec.memory.enabled else "",
            memory_limit=spec.memory.max_entries,
        )


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return str(data)[:300]
