"""Triggers on the real API server, control plane, operator and Firestore emulator, with deliveries sent
over real HTTP: a GitHub-style delivery starts one Execution (trigger Webhook, the owner's label, the
mapped input); copies, also sent at once, start nothing more; forged, stale, replayed and unsigned
deliveries are refused with nothing created; the body and rate bounds; the deliveries' record; the
key shown once and rotated; another user sees nothing."""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Secret

from agentry_common import constants as c
from agentry_common.resources import Execution, Trigger, WorkflowRun
from agentry_common.triggers import sign_generic, sign_github
from tests.fixtures.helpers import eventually

from .helpers import create_agent
from .server import ApiServer

pytestmark = pytest.mark.integration

PR = {
    "action": "opened",
    "pull_request": {"title": "Fix the parser", "number": 7},
    "sender": {"login": "ada"},
}


def make(c_: httpx.Client, name: str, agent: str, expect: int = 201, **fields: Any) -> dict[str, Any]:
    r = c_.post("/api/triggers", json={"name": name, "agent": agent, **fields})
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


def github(
    api: ApiServer, name: str, key: str, payload: Any, delivery: str | None = None, **kw: Any
) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "content-type": "application/json",
        "x-github-event": "pull_request",
        "x-github-delivery": delivery or str(uuid.uuid4()),
        **sign_github(key.encode(), body),
        **kw,
    }
    return httpx.post(f"{api.url}/hooks/{name}", content=body, headers=headers, timeout=30)


def runs_of(kube_client: Client, namespace: str, agent: str) -> list[Any]:
    return list(kube_client.list(Execution, namespace=namespace, labels={c.LABEL_AGENT: agent}))


def test_a_github_delivery_starts_one_run_and_forgeries_start_none(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    owner = api.guest()
    agent = create_agent(owner)["id"]
    mapping = {"input": "Review PR #{{ $.pull_request.number }}: {{ $.pull_request.title }}"}
    created = make(owner, "prs", agent, mapping=mapping)
    key = created["secret"]
    assert key and created["url"].endswith("/hooks/prs") and created["scheme"] == "GitHub"
    # The key is in the Secret, owned by the Trigger; never in the CR or a later answer.
    secret = kube_client.get(Secret, created["secretName"], namespace=namespace)
    assert secret.data is not None and base64.b64decode(secret.data["key"]).decode() == key
    assert secret.metadata is not None and secret.metadata.ownerReferences[0].kind == "Trigger"
    cr = kube_client.get(Trigger, "prs", namespace=namespace)
    assert key not in json.dumps(cr.to_dict())
    shown = eventually(  # Ready once the Agent is in the cluster (the API syncs it)
        lambda: (b := owner.get("/api/triggers/prs").json())["ready"] == "True" and b, what="trigger Ready"
    )
    assert "secret" not in shown and shown["reason"] == "Ready", shown
    assert (kube_client.get(Trigger, "prs", namespace=namespace).status or {})["url"] == "/hooks/prs"

    # Forged, unsigned and wrongly keyed deliveries: 401 with the reason, nothing created.
    body = json.dumps(PR).encode()
    forged = httpx.post(
        f"{api.url}/hooks/prs", content=body, headers={"x-hub-signature-256": "sha256=" + "0" * 64}
    )
    assert forged.status_code == 401 and forged.json()["detail"].startswith("SignatureInvalid"), forged.text
    unsigned = httpx.post(f"{api.url}/hooks/prs", content=body)
    assert unsigned.status_code == 401 and unsigned.json()["detail"].startswith("SignatureMissing")
    wrong_key = github(api, "prs", "not-the-key", PR)
    assert wrong_key.status_code == 401
    tampered = {**sign_github(key.encode(), body), "content-type": "application/json"}
    r = httpx.post(f"{api.url}/hooks/prs", content=body + b" ", headers=tampered)
    assert r.status_code == 401
    assert runs_of(kube_client, namespace, agent) == []

    # Signed: 202 with the Execution and its correlation id.
    r = github(api, "prs", key, PR, delivery="d-1")
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["duplicate"] is False and accepted["execution"] and accepted["correlationId"]
    ex = kube_client.get(Execution, accepted["execution"], namespace=namespace)
    assert ex.spec["trigger"] == "Webhook" and ex.spec["input"] == "Review PR #7: Fix the parser"
    assert ex.spec["correlationId"] == accepted["correlationId"]
    assert ex.metadata is not None and ex.metadata.labels is not None
    assert ex.metadata.labels[c.LABEL_OWNER] == cr.metadata.labels[c.LABEL_OWNER]  # the trigger's owner
    run = owner.get(f"/api/executions/{accepted['execution']}").json()
    assert run["trigger"] == "Webhook"

    # The same delivery again (GitHub's redeliver; also under another delivery id): the same run.
    for delivery in ("d-1", "d-forged-id"):
        again = github(api, "prs", key, PR, delivery=delivery)
        assert again.status_code == 202 and again.json() == {**accepted, "duplicate": True}, again.text
    assert len(runs_of(kube_client, namespace, agent)) == 1

    # A body past the trigger's limit: 413 before it is read whole; a secret-like input: 422.
    assert owner.patch("/api/triggers/prs", json={"maxBodyBytes": 1024}).status_code == 200
    big = github(api, "prs", key, {"pad": "x" * 2000})
    assert big.status_code == 413 and big.json()["detail"].startswith("TooLarge"), big.text
    leaky = github(api, "prs", key, {"pull_request": {"number": 8, "title": "sk-ant-" + "a" * 30}})
    assert leaky.status_code == 422, leaky.text
    not_json = github(api, "prs", key, None, **{"content-type": "text/plain"})
    assert not_json.status_code == 202  # "null" is JSON; a non-JSON body is refused:
    raw = b"a=1&b=2"
    form = httpx.post(f"{api.url}/hooks/prs", content=raw, headers=sign_github(key.encode(), raw))
    assert form.status_code == 400 and form.json()["detail"].startswith("InvalidPayload")
    assert len(runs_of(kube_client, namespace, agent)) == 2

    # The record: every delivery, the reason of each refusal, the run of each accepted one.
    items = owner.get("/api/triggers/prs/deliveries").json()["items"]
    outcomes = [(d["outcome"], d["reason"]) for d in items]
    assert ("Accepted", "") in outcomes and ("Duplicate", "") in outcomes
    assert {"SignatureInvalid", "SignatureMissing", "TooLarge", "RunRefused", "InvalidPayload"} <= {
        r for _, r in outcomes
    }
    first = next(d for d in items if d["deliveryId"] == "d-1" and d["outcome"] == "Accepted")
    assert first["run"] == accepted["execution"] and first["event"] == "pull_request"
    assert first["bodyBytes"] == len(json.dumps(PR)) and len(first["bodyDigest"]) == 64
    assert all("sk-ant-" not in d["excerpt"] for d in items)
    last = eventually(
        lambda: (kube_client.get(Trigger, "prs", namespace=namespace).status or {}).get("lastDelivery"),
        what="status.lastDelivery",
    )
    assert last["outcome"] in ("Accepted", "Duplicate", "Refused")

    # Another user sees and changes nothing of it.
    stranger = api.guest()
    assert stranger.get("/api/triggers").json()["items"] == []
    for method, url in (
        ("GET", "/api/triggers/prs"),
        ("GET", "/api/triggers/prs/deliveries"),
        ("PATCH", "/api/triggers/prs"),
        ("DELETE", "/api/triggers/prs"),
        ("POST", "/api/triggers/prs/rotate-secret"),
    ):
        kw = {"json": {}} if method == "PATCH" else {}
        assert stranger.request(method, url, **kw).status_code == 404, (method, url)
    assert make(stranger, "theirs", agent, expect=422)["detail"][0]["loc"] == ["body", "agent"]

    # Rotation: the old key stops working, the new one (shown once) works.
    rotated = owner.post("/api/triggers/prs/rotate-secret").json()
    assert rotated["secret"] and rotated["secret"] != key
    assert github(api, "prs", key, {"n": 1}).status_code == 401
    assert github(api, "prs", rotated["secret"], {"n": 1}).status_code == 202

    assert owner.delete("/api/triggers/prs").status_code == 204
    assert owner.get("/api/triggers/prs").status_code == 404
    assert github(api, "prs", rotated["secret"], {"n": 2}).status_code in (404, 409)


def test_generic_deliveries_stale_replayed_and_concurrent_copies(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    owner = api.guest()
    agent = create_agent(owner)["id"]
    key = make(
        owner, "generic", agent, scheme="Generic", toleranceSeconds=60, rate={"perMinute": 600, "burst": 50}
    )["secret"].encode()
    body = json.dumps({"text": "hello"}).encode()

    def send(headers: dict[str, str], content: bytes = body) -> httpx.Response:
        return httpx.post(f"{api.url}/hooks/generic", content=content, headers=headers, timeout=30)

    stale = send(sign_generic(key, "m-1", int(time.time()) - 3600, body))
    assert stale.status_code == 401 and stale.json()["detail"].startswith("TimestampStale")
    future = send(sign_generic(key, "m-1", int(time.time()) + 3600, body))
    assert future.status_code == 401
    signed = sign_generic(key, "m-1", int(time.time()), body)
    assert send({**signed, "webhook-id": "m-2"}).status_code == 401  # the id is signed too
    assert send({k: v for k, v in signed.items() if k != "webhook-timestamp"}).status_code == 401
    assert runs_of(kube_client, namespace, agent) == []

    # Ten copies of one delivery at once (a replay, or a sender's retries): one run, nine duplicates.
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: send(signed), range(10)))
    assert [a.status_code for a in answers] == [202] * 10, [a.text for a in answers]
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    assert len({a.json()["execution"] for a in answers}) == 1
    assert len(runs_of(kube_client, namespace, agent)) == 1
    # The sender's retry re-signs with a new time: still the same delivery.
    retry = send(sign_generic(key, "m-1", int(time.time()) + 1, body))
    assert retry.status_code == 202 and retry.json()["duplicate"] is True
    other = send(sign_generic(key, "m-3", int(time.time()), body))
    assert other.status_code == 202 and other.json()["duplicate"] is False
    assert len(runs_of(kube_client, namespace, agent)) == 2
    # The status ends on the last delivery, however close together they came.
    eventually(
        lambda: (
            (kube_client.get(Trigger, "generic", namespace=namespace).status or {})
            .get("lastDelivery", {})
            .get("run")
            == other.json()["execution"]
        ),
        what="status.lastDelivery of the last delivery",
    )


def test_the_rate_and_suspension_bound_deliveries(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    owner = api.guest()
    agent = create_agent(owner)["id"]
    key = make(owner, "slow", agent, rate={"perMinute": 1, "burst": 2})["secret"]
    codes = [github(api, "slow", key, {"n": i}) for i in range(3)]
    assert [r.status_code for r in codes] == [202, 202, 429], [r.text for r in codes]
    assert int(codes[2].headers["retry-after"]) >= 1
    assert codes[2].json()["detail"].startswith("RateLimited")
    assert owner.patch("/api/triggers/slow", json={"suspend": True}).json()["reason"] == "Suspended"
    suspended = github(api, "slow", key, {"n": 9})
    assert suspended.status_code == 409 and suspended.json()["detail"].startswith("Suspended")
    assert len(runs_of(kube_client, namespace, agent)) == 2
    # Bad input to the owner's API: 422 naming the field, never a 500.
    bad = owner.post("/api/triggers", json={"name": "x", "agent": agent, "mapping": {"input": "{{ $[ }}"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "mapping", "input"], bad.text
    both = owner.post("/api/triggers", json={"name": "y", "agent": agent, "workflow": "w"})
    assert both.status_code == 422
    params = owner.post(
        "/api/triggers", json={"name": "z", "agent": agent, "mapping": {"parameters": {"a": "b"}}}
    )
    assert params.status_code == 422 and params.json()["detail"][0]["loc"][:3] == [
        "body",
        "mapping",
        "parameters",
    ]
    for name in ("no-such-trigger", "NOT_a-name", "x" * 300):
        assert httpx.post(f"{api.url}/hooks/{name}", content=b"{}").status_code == 404, name
        assert owner.get(f"/api/triggers/{name}").status_code == 404, name


def test_a_delivery_starts_a_workflow_run_with_the_mapped_parameters(
    api: ApiServer, kube_client: Client, namespace: str
) -> None:
    owner = api.guest()
    agent = create_agent(owner)["id"]
    spec = {
        "steps": [{"name": "fetch", "agentRef": {"name": agent}, "input": "news on {{ params.topic }}"}],
        "parameters": [{"name": "topic", "default": "chips"}],
    }
    r = owner.post("/api/workflows", json={"name": "Digest", "spec": spec})
    assert r.status_code == 201, r.text
    workflow = r.json()["id"]
    body = {"name": "digest", "workflow": workflow, "mapping": {"parameters": {"topic": "{{ $.topic }}"}}}
    r = owner.post("/api/triggers", json=body)
    assert r.status_code == 201, r.text
    key = r.json()["secret"]

    answer = github(api, "digest", key, {"topic": "memory"})
    assert answer.status_code == 202, answer.text
    run_name = answer.json()["workflowRun"]
    assert answer.json()["execution"] is None and len(run_name) <= 40
    run = kube_client.get(WorkflowRun, run_name, namespace=namespace)
    assert run.spec["parameters"] == {"topic": "memory"}
    assert run.metadata is not None and run.metadata.labels is not None
    assert run.metadata.labels[c.LABEL_TRIGGER] == "Webhook"
    # Its step's input comes from the payload: the step is a Webhook run, framed as untrusted.
    step = eventually(
        lambda: next(
            iter(kube_client.list(Execution, namespace=namespace, labels={c.LABEL_AGENT: agent})), None
        ),
        what="the step's Execution",
    )
    assert step.spec["trigger"] == "Webhook" and step.spec["input"] == "news on memory"
    again = github(api, "digest", key, {"topic": "memory"})
    assert again.json() == {**answer.json(), "duplicate": True}
