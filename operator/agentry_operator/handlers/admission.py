"""Governance at the start of a run: ask the LLM gateway's admission, and mint the run token.

One `Governance` per operator process (built at start-up when AGENTRY_GATEWAY_URL is set) holds the
keyring and one HTTP client. The question is asked once per start: never once the Job exists (a
crash after its creation, or a stale event, finds the Job and adopts it), not while an answer is
awaited, and not again before the retry the last answer asked for (the State's one background loop
brings the Execution back then). Docs: docs/governance.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from typing import Any

import httpx
from lightkube import AsyncClient

from agentry_common.conditions import Reason
from agentry_common.governance import ADMISSION_PATH, RUN_END_PATH, RunEnd
from agentry_common.models import AgentSpec, Phase, Trigger
from agentry_common.naming import token_secret_name
from agentry_common.tokens import Keyring, RunLimits, mint_run_token, mint_service_token

from .. import kube
from ..builders.governance import (
    Answer,
    Verdict,
    admission_request,
    build_token_secret,
    decide,
    deleted_with_live_token,
    model_chain,
    owner_of,
    priority_of,
)
from ..builders.job import active_deadline_seconds, child_labels, owner_reference
from ..config import OperatorConfig
from .state import Key, Logger, State

log = logging.getLogger("agentry.operator.governance")

SERVICE_SUBJECT = "operator"


class Governance:
    """The admission client and the token keyring of one operator process."""

    def __init__(
        self, config: OperatorConfig, keyring: Keyring, http: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config
        self.keyring = keyring
        self.http = http or httpx.AsyncClient(
            base_url=config.gateway_base, timeout=config.admission_timeout_seconds
        )

    @classmethod
    def from_config(cls, config: OperatorConfig) -> Governance | None:
        """None when the gateway is off; ValueError (the operator does not start) without keys."""
        return cls(config, config.keyring()) if config.governed else None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def ask(self, body: dict[str, Any]) -> Answer:
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


async def execution_deleted(state: State, body: dict[str, Any], logger: Logger) -> None:
    """An Execution was deleted (its watch's DELETED event, with its last state): if its run had a
    Job and had not ended, tell the gateway, so that the run token still held by its pod (which the
    garbage collector is removing) admits no more calls. Best effort and without a finalizer: an
    event missed while the operator was down leaves the token to its expiry (the Job's deadline +
    600 s), and to the budgets. Never raises."""
    if state.governance is None or not deleted_with_live_token(body):
        return
    logger.info("execution %s deleted before it ended: ending its run token", body["metadata"]["name"])
    await state.governance.end(body)


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300]
    if isinstance(data, dict) and "detail" in data:
        return str(data["detail"])[:300]
    return str(data)[:300]


async def admission(
    client: AsyncClient,
    config: OperatorConfig,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    job: str,
    logger: Logger,
) -> Verdict | None:
    """The gateway's verdict on starting this Execution now; None when it must not be asked now
    (asked recently: a retry is scheduled; or being asked), or when its Job already exists (the
    caller adopts it: a verdict with start=True and the current conditions)."""
    gov = state.governance
    if gov is None:
        raise RuntimeError("governance is on but the operator has no gateway client")
    key: Key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if key in state.admitting or state.admission_after.get(key, 0.0) > time.monotonic():
        return None
    status = body.get("status") or {}
    state.admitting.add(key)
    try:
        if await kube.get_or_none(client, kube.Job, job, key[0]) is not None:
            return decide_existing(status)
        request = admission_request(body, agent, config, dt.datetime.now(dt.UTC))
        answer = await gov.ask(request)
    finally:
        state.admitting.discard(key)
    verdict = decide(
        answer,
        status.get("conditions"),
        trigger=body["spec"].get("trigger"),
        config=config,
        generation=body["metadata"].get("generation"),
    )
    logger.info(
        "admission of execution %s (priority %s): %s",
        key[1],
        request["priority"],
        verdict.log or verdict.message,
    )
    if verdict.retry_seconds is not None:
        state.admission_after[key] = time.monotonic() + verdict.retry_seconds
        state.retry_later(key, verdict.retry_seconds)
    else:
        state.admission_after.pop(key, None)
    return verdict


def decide_existing(status: dict[str, Any]) -> Verdict:
    """The Job exists already (admitted before a crash): start, i.e. adopt it, without asking."""
    return Verdict(True, Phase.PENDING, Reason.ADMITTED, "", list(status.get("conditions") or []))


async def ensure_token_secret(
    client: AsyncClient,
    state: State,
    body: dict[str, Any],
    agent: dict[str, Any],
    job: str,
    spec: AgentSpec | None = None,
) -> str:
    """Create the run token Secret of Job `job` before the Job (a 409 adopts the one an earlier
    attempt made for the same Execution); returns its name."""
    gov = state.governance
    if gov is None:
        raise RuntimeError("governance is on but the operator has no gateway client")
    meta = body["metadata"]
    name = token_secret_name(job)
    labels = child_labels(
        agent["metadata"]["name"], meta["name"], body["spec"].get("trigger", Trigger.MANUAL)
    )
    token = gov.run_token(body, agent, spec)
    secret = build_token_secret(body, name, token, labels, owner_reference(body), secrets.token_hex(32))
    await kube.create_or_adopt(client, secret)
    return name
