"""Admins steer budgets through the API, and a real LLM gateway on the same emulator obeys within its
refresh: a manual throttle sends a user's next call to the cheaper model with the admin's reason
(which that user then reads in their decisions and throttles), another user is untouched, lifting
restores the user; a refusing throttle answers 402; admin policies are created, enforced, edited and
deleted, the governance file's are read-only; a document written around the API is skipped by the
gateway while the rest apply; a non-admin gets 403 with the reason; every change is audited."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from agentry_api.auth import owner_label
from agentry_cli.commands import account
from agentry_common.governance import ADMISSION_PATH, BUDGET_POLICIES
from agentry_localcluster import localhttp
from agentry_localcluster.kube import ControlPlane
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient
from tests.integration.gateway.harness import KEYRING, GatewayServer, config, settings, svc_headers

from .budget_steering import BUDGETS, CHEAPER, call, scripted_upstream  # noqa: F401 (the llm fixture)
from .server import ApiServer, api_settings, start_api

pytestmark = pytest.mark.integration

REFRESH = 0.2  # the gateway's AGENTRY_GATEWAY_ADMIN_REFRESH_SECONDS here (5 s by default)
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}


@pytest.fixture
def steered(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, llm: ScriptedLLM
) -> Iterator[tuple[ApiServer, GatewayServer]]:
    fs = settings(ledger="firestore", google_cloud_project=firestore_project, admin_refresh_seconds=REFRESH)
    with GatewayServer(fs, config(llm, budgets=BUDGETS)) as gateway:
        [(kid, key)] = KEYRING.keys.items()
        values = {"gateway_url": gateway.url, "token_keys": f"{kid}:{key.decode()}"}
        api = start_api(api_settings(firestore_project, namespace, str(kube.kubeconfig), **values))
        try:
            yield api, gateway
        finally:
            api.stop()


def applied(gw: GatewayServer, name: str, present: bool = True, timeout: float = 10) -> float:
    """Seconds until the gateway's ledger has (or no longer has) the policy or throttle `name`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if any(p.name == name for p in gw.gateway.ledger.policies) is present:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"the gateway did not {'apply' if present else 'drop'} {name} in {timeout} s")


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def test_a_manual_throttle_steers_one_users_calls_until_lifted(
    steered: tuple[ApiServer, GatewayServer], llm: ScriptedLLM, namespace: str
) -> None:
    api, gw = steered
    admin, alice, bob = api.client(headers=ADMIN), api.guest(), api.guest()
    alice_id = alice.get("/api/me").json()["id"]
    alice_owner, bob_owner = owner_label(alice_id), owner_label(bob.get("/api/me").json()["id"])
    llm.script([{"text": "a1"}, {"text": "a2"}, {"text": "b1"}, {"text": "a3"}])
    assert call(gw, alice_owner, namespace, "a-run", "a-agent").headers["x-agentry-decision"] == "allow"

    until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    body = {"scope": "user", "subject": alice_id, "reason": "runaway loop in a-agent", "until": until}
    throttle = ok(admin.post("/api/budgets/throttles", json=body), 201)
    assert (throttle["subject"], throttle["userId"], throttle["active"]) == (alice_owner, alice_id, True)
    staleness = applied(gw, f"throttle:{throttle['id']}")
    print(f"throttle applied by the gateway {staleness:.2f} s after the API answered (refresh {REFRESH} s)")

    steered_call = call(gw, alice_owner, namespace, "a-run", "a-agent")
    assert steered_call.headers["x-agentry-decision"] == "throttle", steered_call.text
    assert steered_call.headers["x-agentry-model"] == CHEAPER
    assert call(gw, bob_owner, namespace, "b-run", "b-agent").headers["x-agentry-decision"] == "allow"
    gw.drain()
    for priority, action in ((2, "wait"), (5, "throttle")):  # admission: as in the throttle zone
        asked = {"namespace": namespace, "agent": "a-agent", "user": alice_owner, "priority": priority}
        asked["model"] = "claude-sonnet-4-6"
        answer = ok(localhttp.post(gw.url + ADMISSION_PATH, json=asked, headers=svc_headers()))
        assert answer["action"] == action and "runaway loop in a-agent" in answer["reason"], answer
    assert answer["model"] == CHEAPER

    why = ok(alice.get("/api/budgets/decisions"))["items"][0]
    assert why["decision"] == "throttle" and "runaway loop in a-agent" in why["decisionReason"]
    assert "throttled by an admin" in why["decisionReason"]
    assert [t["reason"] for t in ok(alice.get("/api/budgets/throttles"))["items"]] == [
        "runaway loop in a-agent"
    ]
    assert ok(bob.get("/api/budgets/throttles"))["items"] == []

    lifted = ok(admin.delete(f"/api/budgets/throttles/{throttle['id']}"))
    assert lifted["active"] is False and lifted["liftedBy"]
    ok(admin.delete(f"/api/budgets/throttles/{throttle['id']}"), 409)
    applied(gw, f"throttle:{throttle['id']}", present=False)
    assert call(gw, alice_owner, namespace, "a-run", "a-agent").headers["x-agentry-decision"] == "allow"

    refuse = {"scope": "agent", "subject": "a-agent", "mode": "refuse", "reason": "maintenance"}
    stop = ok(admin.post("/api/budgets/throttles", json=refuse), 201)
    assert stop["subject"] == f"{namespace}/a-agent"
    applied(gw, f"throttle:{stop['id']}")
    refused = call(gw, alice_owner, namespace, "a-run", "a-agent")
    assert refused.status_code == 402 and "maintenance" in refused.json()["error"]["message"]

    audit = ok(admin.get("/api/budgets/audit"))["items"]
    assert [e["action"] for e in audit] == ["throttle.create", "throttle.lift", "throttle.create"][::-1]
    assert audit[1]["before"]["active"] is True and audit[1]["after"]["active"] is False


def test_admin_policies_are_validated_enforced_edited_and_deleted(
    steered: tuple[ApiServer, GatewayServer], llm: ScriptedLLM, namespace: str
) -> None:
    api, gw = steered
    admin = api.client(headers=ADMIN)
    owner = owner_label("someone")

    def policies() -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in ok(admin.get("/api/budgets/policies"))["policies"]}

    eventually(lambda: "users" in policies())  # the gateway published its governance file
    assert (policies()["users"]["source"], policies()["users"]["editable"]) == ("config", False)

    bad = {"name": "team", "scope": "agent", "limits": [{"window": "5x", "messages": 2}]}
    detail = ok(admin.post("/api/budgets/policies", json=bad), 422)["detail"]
    assert detail[0]["loc"] == ["body", "limits", 0, "window"] and "5x" in detail[0]["msg"]
    taken = {**bad, "name": "users", "limits": [{"window": "5h", "messages": 2}]}
    assert ok(admin.post("/api/budgets/policies", json=taken), 422)["detail"][0]["loc"] == ["body", "name"]
    assert ok(
        admin.put("/api/budgets/policies/users", json={"scope": "user", "limits": taken["limits"]}), 409
    )

    policy = {
        "name": "team",
        "scope": "agent",
        "match": f"{namespace}/*",
        "limits": [{"window": "5h", "messages": 2}],
    }
    assert ok(admin.post("/api/budgets/policies", json=policy), 201)["source"] == "admin"
    ok(admin.post("/api/budgets/policies", json=policy), 409)
    applied(gw, "team")
    llm.script([{"text": "1"}, {"text": "2"}, {"text": "3"}])
    assert call(gw, owner, namespace, "r1", "worker").status_code == 200
    assert call(gw, owner, namespace, "r1", "worker").status_code == 200
    over = call(gw, owner, namespace, "r1", "worker")
    assert over.status_code == 402 and "policy team" in over.json()["error"]["message"]

    raised = {"scope": "agent", "match": f"{namespace}/*", "limits": [{"window": "5h", "messages": 1000}]}
    assert ok(admin.put("/api/budgets/policies/team", json=raised))["limits"][0]["messages"] == 1000
    eventually(lambda: call(gw, owner, namespace, "r1", "worker").status_code == 200, timeout=10)
    ok(admin.delete("/api/budgets/policies/team"), 204)
    ok(admin.delete("/api/budgets/policies/team"), 404)
    applied(gw, "team", present=False)
    assert [e["action"] for e in ok(admin.get("/api/budgets/audit"))["items"]] == [
        "policy.delete",
        "policy.update",
        "policy.create",
    ]


def test_a_bad_document_is_skipped_and_the_rest_apply(
    steered: tuple[ApiServer, GatewayServer], namespace: str
) -> None:
    api, gw = steered
    db = gw.gateway.ledger.client  # type: ignore[attr-defined]
    broken = {"name": "broken", "scope": "user", "limits": [{"window": "forever", "tokens": 1}]}
    fine = {"name": "fine", "scope": "user", "match": "nobody", "limits": [{"window": "day", "tokens": 5}]}
    gw.run(db.collection(BUDGET_POLICIES).document("broken").set(broken))
    gw.run(db.collection(BUDGET_POLICIES).document("fine").set(fine))
    applied(gw, "fine")
    names = [p.name for p in gw.gateway.ledger.policies]
    assert "broken" not in names and "users" in names
    assert api.client(headers=ADMIN).get("/api/budgets/policies").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/budgets/policies", None),
        (
            "POST",
            "/api/budgets/policies",
            {"name": "x", "scope": "user", "limits": [{"window": "day", "tokens": 1}]},
        ),
        ("PUT", "/api/budgets/policies/x", {"scope": "user", "limits": [{"window": "day", "tokens": 1}]}),
        ("DELETE", "/api/budgets/policies/x", None),
        ("POST", "/api/budgets/throttles", {"scope": "installation", "reason": "mine"}),
        ("DELETE", "/api/budgets/throttles/t-0123", None),
        ("GET", "/api/budgets/audit", None),
    ],
)
def test_a_non_admin_is_refused_with_the_reason(
    steered: tuple[ApiServer, GatewayServer], method: str, path: str, body: dict[str, Any] | None
) -> None:
    api, gw = steered
    r = api.guest().request(method, path, json=body)
    assert r.status_code == 403 and "only an administrator" in r.json()["detail"]
    assert not [p for p in gw.gateway.ledger.policies if p.name in ("x", "mine")]


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + patient(timeout)
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.1)


def test_the_cli_sets_and_deletes_a_policy_and_throttles_and_unthrottles(
    steered: tuple[ApiServer, GatewayServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agentry budgets set|policies|throttle|throttles|unthrottle|delete` as main.py mounts them."""
    api, gw = steered
    root = typer.Typer()
    root.callback()(lambda: None)
    root.add_typer(account.budgets_app, name="budgets")
    env = {"AGENTRY_API_URL": api.url, "AGENTRY_TOKEN": "admin-token-for-tests", "NO_COLOR": "1"}

    def agentry(*args: str) -> str:
        result = CliRunner().invoke(root, ["budgets", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    agentry(
        "set", "nightly", "--scope", "agent", "--match", "*/nightly-*", "--limit", "day:costUSD=5,messages=40"
    )
    agentry("set", "nightly", "--scope", "agent", "--match", "*/nightly-*", "--limit", "day:messages=50")
    shown = json.loads(agentry("policies", "-o", "json"))
    [nightly] = [p for p in shown["policies"] if p["name"] == "nightly"]
    assert nightly["limits"] == [{"window": "day", "messages": 50}] and nightly["source"] == "admin"
    applied(gw, "nightly")
    made = json.loads(
        agentry("throttle", "namespace", "team-x", "--reason", "cost spike", "--for", "2h", "-o", "json")
    )
    assert made["mode"] == "throttle" and made["until"] and made["subject"] == "team-x"
    assert "cost spike" in agentry("throttles")
    assert "throttle by an admin on namespace team-x" in agentry()  # `agentry budgets` says why
    applied(gw, f"throttle:{made['id']}")
    assert "lifted" in agentry("unthrottle", made["id"])
    assert "deleted" in agentry("delete", "nightly")
    applied(gw, "nightly", present=False)
    applied(gw, f"throttle:{made['id']}", present=False)
