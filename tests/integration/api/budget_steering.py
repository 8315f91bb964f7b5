"""A governed API for budget tests: the API on the emulator asking a real LLM gateway (Firestore
ledger, the same project, one `users` budget of 100 messages per 5 h), and calls that the budget
admits, throttles to the cheaper model and refuses — each metered by the gateway into `llmCalls`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from agentry_gateway.budgets import Amount
from agentry_gateway.ledger import Subjects
from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.gateway.harness import (
    ANTHROPIC_KEY,
    KEYRING,
    GatewayServer,
    config,
    post,
    run_token,
    settings,
)

from .server import ApiServer, api_settings, start_api

BUDGETS = [{"name": "users", "scope": "user", "limits": [{"window": "5h", "messages": 100}]}]
MESSAGE = {"model": "claude-sonnet-4-6", "max_tokens": 40, "messages": [{"role": "user", "content": "go"}]}
CHEAPER = "claude-haiku-4-5"  # the default config's cheaper model for sonnet


@pytest.fixture(name="llm")
def scripted_upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedLLM]:
    """The scripted provider behind the gateway, with the gateway's channel keys in the environment
    (import it into a test module to use it as the `llm` fixture)."""
    monkeypatch.setenv("GW_TEST_ANTHROPIC", ANTHROPIC_KEY)
    monkeypatch.setenv("GW_TEST_OPENAI", ANTHROPIC_KEY)
    with ScriptedLLM() as server:
        yield server


@contextmanager
def governed(
    project: str, namespace: str, kubeconfig: str, llm: ScriptedLLM
) -> Iterator[tuple[ApiServer, GatewayServer]]:
    fs = settings(ledger="firestore", google_cloud_project=project)
    with GatewayServer(fs, config(llm, budgets=BUDGETS)) as gateway:
        [(kid, key)] = KEYRING.keys.items()
        values = {"gateway_url": gateway.url, "token_keys": f"{kid}:{key.decode()}"}
        server = start_api(api_settings(project, namespace, kubeconfig, **values))
        try:
            yield server, gateway
        finally:
            server.stop()


def spend(gw: GatewayServer, owner: str, namespace: str, messages: int) -> None:
    """Use already counted against the user's budget (a settlement without a reservation)."""
    subjects = Subjects(user=owner, agent=f"{namespace}/seed", execution=f"{namespace}/seed")
    gw.run(gw.gateway.ledger.settle(subjects, "seed", Amount(messages=messages)))


def call(gw: GatewayServer, owner: str, namespace: str, execution: str, agent: str) -> httpx.Response:
    token = run_token(
        execution, agent=agent, namespace=namespace, user=owner, execution_uid=f"uid-{execution}"
    )
    return post(gw.url, "/v1/messages", token, MESSAGE)


def admit_throttle_refuse(gw: GatewayServer, owner: str, namespace: str, execution: str, agent: str) -> None:
    """Three calls of one run: admitted (1 %), throttled to the cheaper model (86 %), refused (97 %).
    The scripted LLM must have two answers queued."""
    admitted = call(gw, owner, namespace, execution, agent)
    assert admitted.headers["x-agentry-decision"] == "allow", admitted.text
    spend(gw, owner, namespace, 84)
    throttled = call(gw, owner, namespace, execution, agent)
    assert throttled.headers["x-agentry-decision"] == "throttle", throttled.text
    assert throttled.headers["x-agentry-model"] == CHEAPER
    spend(gw, owner, namespace, 10)
    refused = call(gw, owner, namespace, execution, agent)
    assert refused.status_code == 402, refused.text
    gw.drain()
