"""The Cloud Scheduler endpoint (docs/gke.md, step 10): Google-signed ID tokens of an allowed service
account start scheduled runs, one Execution per tick, owned by the Agent's owner."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lightkube import Client

from agentry_api.auth import owner_label
from agentry_api.cluster import Agent, Execution
from agentry_common.naming import scheduled_execution_name
from agentry_localcluster.kube import ControlPlane

from .helpers import create_agent
from .oidc import Issuer, api_trusting_issuer
from .server import ApiServer, api_settings

pytestmark = pytest.mark.integration

GOOGLE = "https://accounts.google.com"
AUDIENCE = "https://agentry.example.com"
INVOKER = "agentry-scheduler@my-project.iam.gserviceaccount.com"
ADMIN = {"Authorization": "Bearer admin-token-for-tests"}
TICK = "2026-11-23T08:00:00Z"
TICK_UNIX = int(dt.datetime(2026, 11, 23, 8, tzinfo=dt.UTC).timestamp())


def google_token(issuer: Issuer, **claims: Any) -> str:
    """An ID token as Google signs it for the job's service account."""
    values: dict[str, Any] = {
        "iss": GOOGLE,
        "aud": AUDIENCE,
        "sub": "112233445566778899",
        "azp": "112233445566778899",
        "email": INVOKER,
        "email_verified": True,
        **claims,
    }
    return issuer.token(**values)


def tick(
    api: ApiServer, ns: str, agent: str, token: str | None, schedule_time: str | None = TICK
) -> httpx.Response:
    headers = {"User-Agent": "Google-Cloud-Scheduler", "X-CloudScheduler": "true"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if schedule_time is not None:
        headers["X-CloudScheduler-ScheduleTime"] = schedule_time
    return api.client().post(f"/api/agents/{ns}/{agent}/runs", json={"trigger": "Schedule"}, headers=headers)


@pytest.fixture
def sched_api(
    firestore_project: str, namespace: str, kube: ControlPlane, crds: None, operator_ready: None
) -> Iterator[tuple[ApiServer, Issuer]]:
    with api_trusting_issuer(
        lambda issuer: api_settings(
            firestore_project,
            namespace,
            str(kube.kubeconfig),
            scheduler_oidc_audience=AUDIENCE,
            scheduler_service_accounts=[INVOKER],
            scheduler_jwks_url=issuer.jwks_url,
        )
    ) as pair:
        yield pair


def test_a_tick_creates_one_scheduled_execution_owned_by_the_agents_owner(
    sched_api: tuple[ApiServer, Issuer], kube_client: Client, namespace: str
) -> None:
    api, issuer = sched_api
    owner = api.guest()
    agent = create_agent(owner)["id"]

    r = tick(api, namespace, agent, google_token(issuer))
    assert r.status_code == 202, r.text
    name = scheduled_execution_name(agent, TICK_UNIX)
    body = r.json()
    assert body["execution"] == name and body["url"] == f"/api/executions/{name}" and body["correlationId"]

    cr = kube_client.get(Execution, name, namespace=namespace)
    assert cr.spec["trigger"] == "Schedule" and cr.spec["scheduledTime"] == TICK
    assert cr.spec["agentRef"] == {"name": agent} and cr.spec["correlationId"] == body["correlationId"]
    owner_id = owner.get("/api/me").json()["id"]
    assert cr.metadata.labels["agentry.dev/trigger"] == "Schedule"
    assert cr.metadata.labels["agentry.dev/owner"] == owner_label(owner_id)

    # The run is the owner's: in their API (and so their dashboard and event stream), nobody else's.
    seen = owner.get(f"/api/executions/{name}")
    assert seen.status_code == 200 and seen.json()["trigger"] == "Schedule"
    assert api.guest().get(f"/api/executions/{name}").status_code == 404

    # Cloud Scheduler retries the same tick: the same Execution, and still only one.
    again = tick(api, namespace, agent, google_token(issuer))
    assert again.status_code == 202, again.text
    assert again.json() == body
    ticks = [
        e.metadata.name
        for e in kube_client.list(Execution, namespace=namespace, labels={"agentry.dev/agent": agent})
    ]
    assert ticks == [name]

    # Without the header: now, to the minute.
    before = int(time.time()) // 60 * 60
    r = tick(api, namespace, agent, google_token(issuer), schedule_time=None)
    assert r.status_code == 202, r.text
    unix = int(r.json()["execution"].rsplit("-", 1)[1])
    assert unix % 60 == 0 and before <= unix <= before + 60
    scheduled = kube_client.get(Execution, r.json()["execution"], namespace=namespace).spec["scheduledTime"]
    assert scheduled == dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # Another representation of the same instant is the same tick.
    same = tick(api, namespace, agent, google_token(issuer), schedule_time="2026-11-23T09:00:00+01:00")
    assert same.status_code == 202 and same.json()["execution"] == name


def test_a_kubectl_agent_is_run_for_the_import_owner(
    sched_api: tuple[ApiServer, Issuer], kube_client: Client, namespace: str
) -> None:
    api, issuer = sched_api
    kube_client.create(
        Agent.from_dict(
            {
                "metadata": {"name": "nightly", "namespace": namespace},
                "spec": {"instructions": "Made with kubectl.", "model": {"name": "claude-sonnet-4-5"}},
            }
        )
    )
    r = tick(api, namespace, "nightly", google_token(issuer))
    assert r.status_code == 202, r.text
    name = scheduled_execution_name("nightly", TICK_UNIX)
    admin = api.client(headers=ADMIN)
    assert admin.get(f"/api/executions/{name}").json()["trigger"] == "Schedule"
    assert kube_client.get(Execution, name, namespace=namespace).spec["scheduledTime"] == TICK

    # The tick's Execution already exists in the cluster (created by another path): 202 with it.
    later = scheduled_execution_name("nightly", TICK_UNIX + 3600)
    kube_client.create(
        Execution.from_dict(
            {
                "metadata": {"name": later, "namespace": namespace},
                "spec": {"agentRef": {"name": "nightly"}, "trigger": "Schedule", "correlationId": "c-1"},
            }
        )
    )
    r = tick(api, namespace, "nightly", google_token(issuer), schedule_time="2026-11-23T09:00:00Z")
    assert r.status_code == 202 and r.json()["execution"] == later, r.text
    assert r.json()["correlationId"] == "c-1"
    assert admin.get(f"/api/executions/{later}").json()["correlationId"] == "c-1"


def test_only_verified_tokens_of_allowed_service_accounts_are_accepted(
    sched_api: tuple[ApiServer, Issuer], kube_client: Client, namespace: str
) -> None:
    api, issuer = sched_api
    agent = create_agent(api.guest())["id"]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unauthenticated = {
        "no token": None,
        "wrong audience": google_token(issuer, aud="https://elsewhere.example.com"),
        "wrong issuer": google_token(issuer, iss="https://issuer.test"),
        "expired": google_token(issuer, exp=int(time.time()) - 3600),
        "bad signature": google_token(issuer, key=other_key),
        "not a JWT": "admin-token-for-tests",
    }
    for why, token in unauthenticated.items():
        r = tick(api, namespace, agent, token)
        assert r.status_code == 401, (why, r.text)
        assert r.headers["www-authenticate"] == "Bearer", why
    forbidden = {
        "another service account": google_token(issuer, email="someone@other.iam.gserviceaccount.com"),
        "unverified email": google_token(issuer, email_verified=False),
        "no email": google_token(issuer, email=None),
    }
    for why, token in forbidden.items():
        r = tick(api, namespace, agent, token)
        assert r.status_code == 403, (why, r.text)
    assert list(kube_client.list(Execution, namespace=namespace, labels={"agentry.dev/agent": agent})) == []

    good = google_token(issuer)
    assert tick(api, namespace, "no-such-agent", good).status_code == 404
    assert tick(api, "another-namespace", agent, good).status_code == 404
    assert tick(api, namespace, "Not_A.Name", good).status_code == 404
    bad_time = tick(api, namespace, agent, good, schedule_time="next monday")
    assert bad_time.status_code == 422 and "ScheduleTime" in str(bad_time.json()["detail"])
    # The scheduler's token is no user: the rest of the API does not accept it.
    assert api.client(headers={"Authorization": f"Bearer {good}"}).get("/api/me").status_code == 401


def test_the_endpoint_is_off_without_an_audience(api: ApiServer, namespace: str) -> None:
    issuer = Issuer()
    try:
        agent = create_agent(api.guest())["id"]
        assert tick(api, namespace, agent, google_token(issuer)).status_code == 404
        assert tick(api, namespace, agent, None).status_code == 404
    finally:
        issuer.http.shutdown()
