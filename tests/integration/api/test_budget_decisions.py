"""The budget's decisions on a user's LLM calls (`GET /api/budgets/decisions`, the /budgets page):
calls throttled and refused by a real gateway on the emulator, each with its zone and explanation,
newest first, paginated; another user's decisions never appear; bad paging input is a 422."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentry_api.auth import owner_label
from agentry_localcluster.kube import ControlPlane
from agentry_testing.scripted_llm import ScriptedLLM
from tests.integration.cli.conftest import Cli
from tests.integration.gateway.harness import GatewayServer

from .budget_steering import (
    CHEAPER,
    admit_throttle_refuse,
    call,
    governed,
    scripted_upstream,  # noqa: F401 (the llm fixture)
    spend,
)
from .server import ApiServer

pytestmark = pytest.mark.integration


@pytest.fixture
def governed_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, llm: ScriptedLLM
) -> Iterator[tuple[ApiServer, GatewayServer]]:
    with governed(firestore_project, namespace, str(kube.kubeconfig), llm) as pair:
        yield pair


def decisions(client: Any, **params: Any) -> dict[str, Any]:
    r = client.get("/api/budgets/decisions", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_decisions_show_throttled_and_refused_calls_of_the_caller_only(
    governed_api: tuple[ApiServer, GatewayServer], llm: ScriptedLLM, namespace: str, tmp_path: Path
) -> None:
    api, gw = governed_api
    alice, bob = api.guest(), api.guest()
    alice_owner = owner_label(alice.get("/api/me").json()["id"])
    bob_owner = owner_label(bob.get("/api/me").json()["id"])
    llm.script([{"text": "ok"}, {"text": "cheaper"}, {"text": "bob cheaper"}])
    admit_throttle_refuse(gw, alice_owner, namespace, "alice-run", "alice-agent")
    spend(gw, bob_owner, namespace, 85)
    assert call(gw, bob_owner, namespace, "bob-run", "bob-agent").headers["x-agentry-decision"] == "throttle"
    gw.drain()

    body = decisions(alice)
    refused, throttled = body["items"]  # the admitted call is not a decision to show
    assert body["nextCursor"] is None
    assert (refused["decision"], refused["zone"], refused["outcome"]) == ("refuse", "critical", "refused")
    assert "critical zone" in refused["decisionReason"] and "priority 5" in refused["decisionReason"]
    assert (throttled["decision"], throttled["zone"]) == ("throttle", "throttle")
    assert throttled["requestedModel"] == "claude-sonnet-4-6" and throttled["model"] == CHEAPER
    assert "users" in throttled["decisionReason"]  # the policy is named in the explanation
    assert {refused["execution"], throttled["execution"]} == {"alice-run"}
    assert throttled["agent"] == "alice-agent" and refused["time"] >= throttled["time"]

    # Bob sees his own throttled call, never Alice's.
    [only] = decisions(bob)["items"]
    assert (only["execution"], only["decision"]) == ("bob-run", "throttle")

    # Pages of one, newest first; the cursor leads to the older one and then ends.
    first = decisions(alice, limit=1)
    assert [i["id"] for i in first["items"]] == [refused["id"]] and first["nextCursor"] is not None
    second = decisions(alice, limit=1, cursor=first["nextCursor"])
    assert [i["id"] for i in second["items"]] == [throttled["id"]] and second["nextCursor"] is None
    assert decisions(bob, cursor=first["nextCursor"])["items"] == []  # a cursor opens nobody else's

    # The page: the zone badge, the decision and why, linked to the run; Bob's page has none of it.
    page = html.unescape(alice.get("/budgets").text)
    assert '<span class="pill zone zone-critical">critical</span>' in page
    assert '<span class="pill decision-throttle">throttle</span>' in page
    assert refused["decisionReason"] in page and 'href="/executions/alice-run"' in page
    assert 'data-policy="users"' in page and 'id="spend-chart"' in page
    other = html.unescape(bob.get("/budgets").text)
    assert "alice-run" not in other and "bob-run" in other

    # `agentry budgets --decisions`: the same decisions, as JSON and as a table.
    cli = Cli(tmp_path / "config.yaml")
    token = alice.post("/api/tokens", json={"name": "cli"}).json()["token"]
    assert cli("login", "--url", api.url, "--token", "-", stdin=token + "\n").returncode == 0
    done = cli("budgets", "--decisions", "--limit", "1", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == first
    table = cli("budgets", "--decisions")
    assert table.returncode == 0 and "refuse" in table.stdout and "throttle" in table.stdout
    assert "bob-run" not in table.stdout


def test_decisions_refuse_bad_paging_and_strangers(governed_api: tuple[ApiServer, GatewayServer]) -> None:
    api, _ = governed_api
    person = api.guest()
    bad = (
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WyJ4IiwgMV0"}, "cursor"),  # base64 of ["x", 1]: no (ts, id)
        ({"cursor": "c" * 513}, "cursor"),
    )
    for params, field in bad:
        r = person.get("/api/budgets/decisions", params=params)
        assert r.status_code == 422, r.text
        assert field in str(r.json()["detail"])
    assert decisions(person) == {"items": [], "nextCursor": None}
    assert api.client().get("/api/budgets/decisions").status_code == 401
    page = person.get("/budgets")
    assert page.status_code == 200 and "No call was throttled" in page.text
    assert 'id="budget-admin"' not in page.text
    # An administrator is told where the limits are set (the gateway offers no API to change them).
    admin = api.client(headers={"Authorization": "Bearer admin-token-for-tests"}).get("/budgets")
    assert admin.status_code == 200 and 'id="budget-admin"' in admin.text and "gateway.config" in admin.text


def test_the_budgets_page_says_when_the_gateway_does_not_answer(
    governed_api: tuple[ApiServer, GatewayServer],
) -> None:
    api, gw = governed_api
    person = api.guest()
    gw.stop()
    assert person.get("/api/budgets").status_code == 503
    page = person.get("/budgets")  # the decisions and the spend still show
    assert page.status_code == 200
    assert 'id="budgets-error"' in page.text and "does not answer" in page.text
    assert 'id="budget-decisions"' in page.text and 'id="spend-chart"' in page.text
