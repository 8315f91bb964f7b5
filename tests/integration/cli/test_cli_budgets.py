"""`agentry budgets` through the API's `/api/budgets` and a real LLM gateway on the emulator: the
caller's user and agent limits with use, what remains and the zone; a chat turn metered by the
gateway shows up; another user sees only their own subjects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentry_api.auth import owner_label
from agentry_localcluster.kube import ControlPlane
from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.api.budget_steering import scripted_upstream  # noqa: F401 (the llm fixture)
from tests.integration.api.helpers import create_agent
from tests.integration.api.server import ApiServer, api_settings, start_api
from tests.integration.api.test_chat import frame, open_chat
from tests.integration.gateway.harness import KEYRING, GatewayServer, config, settings

from .conftest import Cli

pytestmark = pytest.mark.integration

BUDGETS = [
    {"name": "users", "scope": "user", "limits": [{"window": "day", "messages": 1}]},
    {"name": "agents", "scope": "agent", "limits": [{"window": "5h", "tokens": 50000}]},
]


@pytest.fixture
def governed_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, llm: ScriptedLLM
) -> Iterator[tuple[ApiServer, GatewayServer]]:
    fs = settings(ledger="firestore", google_cloud_project=firestore_project)
    with GatewayServer(fs, config(llm, budgets=BUDGETS)) as gateway:
        [(kid, key)] = KEYRING.keys.items()
        values = {"gateway_url": gateway.url, "token_keys": f"{kid}:{key.decode()}"}
        server = start_api(api_settings(firestore_project, namespace, str(kube.kubeconfig), **values))
        yield server, gateway
        server.stop()


def limits(cli: Cli) -> list[dict[str, Any]]:
    done = cli("budgets", "-o", "json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["governed"] is True
    return list(body["limits"])


def mine(items: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    [found] = [i for i in items if i["policy"] == policy]
    return found


def test_budgets_show_use_remaining_and_zone_for_the_caller_only(
    governed_api: tuple[ApiServer, GatewayServer], llm: ScriptedLLM, namespace: str, tmp_path: Path
) -> None:
    api, gateway = governed_api
    person = api.guest()
    token = person.post("/api/tokens", json={"name": "cli"}).json()["token"]
    cli = Cli(tmp_path / "config.yaml")
    assert cli("login", "--url", api.url, "--token", "-", stdin=token + "\n").returncode == 0
    owner = owner_label(person.get("/api/me").json()["id"])
    agent = create_agent(person)

    before = limits(cli)
    users = mine(before, "users")
    assert (users["scope"], users["subject"], users["window"], users["metric"]) == (
        "user",
        owner,
        "day",
        "messages",
    )
    assert (users["used"], users["limit"], users["remaining"], users["zone"]) == ("0", "1", "1", "normal")
    agents = mine(before, "agents")
    assert agents["subject"] == f"{namespace}/{agent['id']}" and agents["remaining"] == "50000"

    llm.script([{"text": "What should the agent do?"}])  # one designer turn, metered for the person
    with open_chat(api, person.cookies) as ws:
        frame(ws)
        ws.send(json.dumps({"type": "message", "text": "a news agent"}))
        assert frame(ws)["type"] == "message"
    gateway.drain()
    users = mine(limits(cli), "users")
    assert (users["used"], users["remaining"], users["percent"], users["zone"]) == (
        "1",
        "0",
        100.0,
        "exhausted",
    )
    table = cli("budgets")
    assert table.returncode == 0 and "exhausted" in table.stdout and "REMAINING" in table.stdout

    # Another person is under the same policies, with their own subject only.
    other = Cli(tmp_path / "other.yaml")
    assert other("login", "--url", api.url, "--guest").returncode == 0
    theirs = limits(other)
    assert owner not in json.dumps(theirs)
    assert mine(theirs, "users")["used"] == "0"
