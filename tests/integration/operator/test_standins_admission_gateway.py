"""The operator's admission client (`Governance.ask`) against a real LLM gateway: what it sends, and how
the gateway's answers and failures map to an `Answer`.

The gateway is the real app (uvicorn, tests/integration/gateway/harness.py) with its Firestore ledger
on Google's emulator. Its 503 is real too: a second gateway whose budget store refuses every read (a
project id Firestore rejects) answers the admission with "the budget store is unavailable". A stopped
gateway is a refused connection. The request itself is observed with httpx's own request hook on the
client the operator uses, on its way to the real server.
"""

from __future__ import annotations

import json

import httpx
import pytest

from agentry_common.tokens import verify
from agentry_gateway.config import GatewayConfig
from agentry_operator.handlers.admission import Governance
from agentry_operator.settings import Settings
from tests.integration.gateway.harness import KEYRING, GatewayServer, settings

pytestmark = pytest.mark.integration

KEY = KEYRING.keys[KEYRING.current].decode()
BODY = {
    "namespace": "ns",
    "agent": "news",
    "user": "u-1",
    "execution": "run",
    "priority": 5,
    "model": "claude-sonnet-4-6",
    "maxWaitSeconds": 600,
}
BUDGETS = GatewayConfig.model_validate(
    {"budgets": [{"name": "users", "scope": "user", "limits": [{"window": "5h", "messages": 100}]}]}
)


def governed(url: str) -> Settings:
    return Settings(gateway_url=url + "/", token_keys=f"{KEYRING.current}:{KEY}")


def recording_client(config: Settings, seen: list[httpx.Request], answered: list[int]) -> httpx.AsyncClient:
    """The client Governance builds, plus hooks that keep each request as it is sent and the status
    of each response as it arrives."""

    async def keep(request: httpx.Request) -> None:
        seen.append(request)

    async def status(response: httpx.Response) -> None:
        answered.append(response.status_code)

    return httpx.AsyncClient(
        base_url=config.gateway_base,
        timeout=config.admission_timeout_seconds,
        event_hooks={"request": [keep], "response": [status]},
    )


async def test_ask_sends_a_service_token_and_maps_failures(firestore_project: str) -> None:
    seen: list[httpx.Request] = []
    answered: list[int] = []
    with GatewayServer(
        settings(ledger="firestore", google_cloud_project=firestore_project), BUDGETS, keyring=KEYRING
    ) as gw:
        config = governed(gw.url)
        gov = Governance(config, config.keyring(), recording_client(config, seen, answered))
        got = await gov.ask(BODY)
        await gov.aclose()
    # The gateway's own decision for this body: nothing spent yet, the normal zone.
    assert answered == [200] and got.problem == "", got.problem
    limit = {
        "policy": "users",
        "scope": "user",
        "subject": "u-1",  # the body's user, as the gateway read it
        "window": "5h",
        "metric": "messages",
        "limit": 100,
        "used": 0,
        "reserved": 0,
        "percent": 0.0,
    }
    assert got.decision == {
        "action": "allow",
        "zone": "normal",
        "reason": "normal zone: user u-1 5h messages at 0.0 % (0 of 100, policy users)",
        "priority": 5,
        "requestedModel": "claude-sonnet-4-6",
        "model": "claude-sonnet-4-6",
        "until": None,
        "budget": limit,
        "limits": [limit],
    }
    request = seen[0]
    assert str(request.url) == gw.url + "/v1/agentry/admission"
    claims = verify(request.headers["authorization"].removeprefix("Bearer "), KEYRING, expected="svc")
    assert claims.subject == "operator"
    assert json.loads(request.content) == BODY

    # A gateway whose budget store fails answers 503: unavailable (retried), with the gateway's words.
    broken = settings(ledger="firestore", google_cloud_project="no such project!")
    with GatewayServer(broken, BUDGETS, keyring=KEYRING) as down_gw:
        config = governed(down_gw.url)
        gov = Governance(config, config.keyring(), recording_client(config, seen, answered))
        down = await gov.ask(BODY)
        await gov.aclose()
    assert answered == [200, 503]  # the real gateway's answer, not a timeout or a refused connection
    assert down.decision is None and down.unavailable
    assert down.problem.startswith("HTTP 503: ") and "the budget store is unavailable" in down.problem

    unreachable = Governance(governed("http://127.0.0.1:9"), KEYRING)
    gone = await unreachable.ask({})
    assert gone.decision is None and gone.unavailable and "ConnectError" in gone.problem
    await unreachable.aclose()
