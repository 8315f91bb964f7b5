"""The budgets a user is under, as the LLM gateway counts them (read only).

The budget policies live in the gateway's governance file and the counters in Firestore
(`budgetCounters`, written by the gateway alone); only the gateway knows which policies match a
subject. So the API asks the gateway's `GET /v1/agentry/budgets` (a service token) once per subject
set of the caller's own agents — their user subject (the owner label; `ns:<namespace>` for agents
created with kubectl), each agent, the namespace and the installation — and never for anybody else's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from pydantic import BaseModel, Field

from agentry_common.tls import client_context
from agentry_common.tokens import Keyring, mint_service_token

from ...auth import User
from ...settings import Settings
from ..errors import Unavailable

log = logging.getLogger("agentry.api.budgets")

BUDGETS_PATH = "/v1/agentry/budgets"
TIMEOUT_SECONDS = 10.0
PARALLEL = 8  # gateway questions in flight per request
NO_GATEWAY = "no LLM gateway is configured (AGENTRY_GATEWAY_URL): runs are not budgeted"


class BudgetLimit(BaseModel):
    policy: str = Field(
        description="The policy's name in the gateway's governance file (`run`: per-run limits)."
    )
    scope: str = Field(description="user, agent, namespace or installation")
    subject: str = Field(description="owner label (or ns:<namespace>), <namespace>/<agent>, namespace, all")
    window: str = Field(description="5h, day, month, ...")
    metric: str = Field(description="tokens, messages or costUSD")
    limit: str
    used: str = Field(description="settled use in the window")
    reserved: str = Field(description="held by calls in flight")
    remaining: str = Field(description="limit - used - reserved, at least 0")
    percent: float
    zone: str = Field(description="normal, throttle, critical or exhausted")


class BudgetsOut(BaseModel):
    governed: bool = Field(description="False when no gateway is configured (no budgets apply).")
    note: str | None = None
    limits: list[BudgetLimit] = Field(description="Highest use first.")


def subject_queries(user: User, agents: Iterable[dict[str, Any]], namespace: str) -> list[dict[str, str]]:
    """One gateway question per agent of the caller (a user with no agent: their user subject)."""
    queries: list[dict[str, str]] = []
    for agent in agents:
        query = {"namespace": namespace, "agent": str(agent["id"])}
        if agent.get("source") != "cluster":  # kubectl agents carry no owner label: ns:<namespace>
            query["user"] = user.owner_label
        queries.append(query)
    return queries or [{"namespace": namespace, "agent": "-", "user": user.owner_label}]


def remaining(limit: Any, used: Any, reserved: Any) -> str:
    try:
        left = Decimal(str(limit)) - Decimal(str(used)) - Decimal(str(reserved))
    except InvalidOperation:
        return ""
    return str(max(left, Decimal(0)))


def merge(answers: Sequence[dict[str, Any]]) -> list[BudgetLimit]:
    """The limits of every answer, each (policy, scope, subject, window, metric) once, fullest first."""
    seen: dict[tuple[str, ...], BudgetLimit] = {}
    for answer in answers:
        for raw in answer.get("limits") or []:
            key = tuple(str(raw.get(k)) for k in ("policy", "scope", "subject", "window", "metric"))
            if key in seen:
                continue
            seen[key] = BudgetLimit(
                **{k: str(raw.get(k, "")) for k in ("policy", "scope", "subject", "window", "metric")},
                limit=str(raw.get("limit", "")),
                used=str(raw.get("used", "")),
                reserved=str(raw.get("reserved", "")),
                remaining=remaining(raw.get("limit"), raw.get("used"), raw.get("reserved")),
                percent=float(raw.get("percent") or 0.0),
                zone=str(raw.get("zone", "")),
            )
    return sorted(seen.values(), key=lambda s: -s.percent)


def keyring_of(settings: Settings) -> Keyring:
    keys = settings.token_keys.get_secret_value() if settings.token_keys else None
    try:
        return Keyring.from_settings(settings.token_keys_dir, keys, settings.token_kid)
    except (OSError, ValueError) as exc:
        log.error("budgets: no token keys to ask the gateway with: %s", exc)
        raise Unavailable("budgets cannot be read: the API has no token keys for the LLM gateway") from exc


async def ask(client: httpx.AsyncClient, query: dict[str, str], gate: asyncio.Semaphore) -> dict[str, Any]:
    async with gate:
        try:
            response = await client.get(BUDGETS_PATH, params=query)
        except httpx.HTTPError as exc:
            log.warning("budgets: the gateway does not answer: %s", type(exc).__name__)
            raise Unavailable("the LLM gateway does not answer; budgets cannot be read now") from exc
    if response.status_code in (401, 403):
        log.error("budgets: the gateway refused the API's service token (%s)", response.status_code)
        raise Unavailable("the LLM gateway refused the API's token: their token keys differ")
    if response.status_code != 200:
        log.warning("budgets: the gateway answered %s", response.status_code)
        raise Unavailable(f"the LLM gateway answered {response.status_code}; budgets cannot be read now")
    body: dict[str, Any] = response.json()
    return body


async def budgets(
    settings: Settings,
    user: User,
    agents: Iterable[dict[str, Any]],
    transport: httpx.AsyncBaseTransport | None = None,
) -> BudgetsOut:
    if not settings.gateway_url:
        return BudgetsOut(governed=False, note=NO_GATEWAY, limits=[])
    token = mint_service_token(keyring_of(settings), "agentry-api:budgets", ttl_seconds=60)
    gate = asyncio.Semaphore(PARALLEL)
    async with httpx.AsyncClient(
        base_url=settings.gateway_url.rstrip("/"),
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT_SECONDS,
        transport=transport,
        verify=client_context(),
    ) as client:
        queries = subject_queries(user, agents, settings.namespace)
        answers = await asyncio.gather(*(ask(client, q, gate) for q in queries))
    return BudgetsOut(governed=True, limits=merge(answers))
