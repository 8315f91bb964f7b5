"""The LLM gateway's client of one operator process (AGENTRY_GATEWAY_URL set): admission questions,
run ends, and the run tokens minted with the keyring shared with the gateway (docs/governance.md)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from agentry_common.governance import ADMISSION_PATH, RUN_END_PATH, RunEnd
from agentry_common.models import AgentSpec
from agentry_common.tokens import Keyring, RunLimits, mint_run_token, mint_service_token

from .builders.governance import Answer, model_chain, owner_of, priority_of
from .builders.job import active_deadline_seconds
from .settings import Settings

log = logging.getLogger("agentry.operator.governance")

SERVICE_SUBJECT = "operator"


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

    def run_token(
        self, execution: dict[str, Any], agent: dict[str, Any], spec: AgentSpec | None = None
    ) -> str:
        """The run token of one Job: valid for the Job's deadline (+ margin), limits from spec.budget,
        the model chain from spec.model (`spec`: the Agent's effective spec parsed already, else it
        is parsed here)."""
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
        )


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return str(data)[:300]
