"""Agent memory on a real API server with a governed operator and a real gateway: a run of an Agent
with spec.memory.enabled gets a token scoped to its Agent's store (`mem` = the Agent's uid, `memn`
its limit) and the store's URL; a run of another Agent gets neither. The store goes when the Agent
is deleted, and the operator's sweep drops the stores of Agents that are gone (deleted while it was
away, or re-created under the same name) and keeps the others (docs/runs.md, "Memory across runs").

Own control plane, one governed operator (a fast sweep) and a real gateway (test_governance.py's).
"""

# ruff: noqa: F811  (fixtures/governed.py's fixtures, imported: a governed plane, gateway and operator)

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Secret

from agentry_common.memory import ENV_MEMORY_URL
from agentry_common.naming import token_secret_name
from agentry_common.tokens import verify
from agentry_gateway.memory import Owner
from agentry_gateway.memory.local import LocalMemoryStore
from agentry_operator.kube import Agent
from tests.fixtures.governed import gateway, governed_operator, kube_client, plane  # noqa: F401
from tests.fixtures.helpers import eventually
from tests.fixtures.servers import make_namespace
from tests.integration.operator.test_follow_ups import client  # noqa: F401
from tests.integration.operator.test_governance import (
    KEYRING,
    Gateway,
    make_agent,
    make_execution,
    the_job,
)

pytestmark = pytest.mark.integration

SWEEP_SECONDS = "1"
OPERATOR_ENV = {"AGENTRY_MEMORY_SWEEP_SECONDS": SWEEP_SECONDS}  # fixtures/governed.py's operator


@pytest.fixture
def ns(client: Client) -> str:
    return make_namespace(client, "mem")


def store_of(gateway: Gateway) -> LocalMemoryStore:
    store = gateway.app.state.gateway.memories
    assert isinstance(store, LocalMemoryStore)
    return store


def remember(gateway: Gateway, owner: Owner, key: str = "k") -> None:
    coro = store_of(gateway).put(owner, key, "v", "test", 10)
    asyncio.run_coroutine_threadsafe(coro, gateway.loop).result(10)


def has_store(gateway: Gateway, owner: Owner) -> bool:
    return owner.doc_id in store_of(gateway).stores_


def uid_of(agent: Any) -> str:
    return str(agent.metadata.uid)


def run_env_and_claims(client: Client, ns: str, run: str, agent: str) -> tuple[dict[str, Any], Any]:
    job = the_job(client, make_execution(client, ns, run, agent, input="hello"))
    assert job.metadata is not None and job.spec is not None
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env or []}  # type: ignore[union-attr]
    data = client.get(Secret, token_secret_name(job.metadata.name or ""), namespace=ns).data or {}
    return env, verify(base64.b64decode(data["token"]).decode(), KEYRING, expected="run")


def test_a_run_of_an_agent_with_memory_gets_its_agents_store(
    client: Client, ns: str, gateway: Gateway
) -> None:
    keeper = make_agent(client, ns, "keeper", memory={"enabled": True, "maxEntries": 7})
    make_agent(client, ns, "forgetful")
    env, claims = run_env_and_claims(client, ns, "keeper-1", "keeper")
    assert env[ENV_MEMORY_URL] == gateway.url
    assert (claims.memory, claims.memory_limit) == (uid_of(keeper), 7)
    env, claims = run_env_and_claims(client, ns, "forgetful-1", "forgetful")
    assert ENV_MEMORY_URL not in env and (claims.memory, claims.memory_limit) == ("", 0)


def test_the_store_goes_with_its_agent(client: Client, ns: str, gateway: Gateway) -> None:
    keeper = make_agent(client, ns, "keeper", memory={"enabled": True})
    other = make_agent(client, ns, "other", memory={"enabled": True})
    mine, theirs = Owner(ns, uid_of(keeper), "keeper"), Owner(ns, uid_of(other), "other")
    remember(gateway, mine)
    remember(gateway, theirs)
    client.delete(Agent, "keeper", namespace=ns)
    eventually(lambda: not has_store(gateway, mine), what="the deleted Agent's memory gone")
    assert has_store(gateway, theirs)

    # Re-created under the same name: a new uid, a new (empty) store.
    again = make_agent(client, ns, "keeper", memory={"enabled": True})
    assert uid_of(again) != mine.agent_uid
    assert not asyncio.run_coroutine_threadsafe(
        store_of(gateway).entries(Owner(ns, uid_of(again))), gateway.loop
    ).result(10)


def test_the_sweep_drops_stores_whose_agent_is_gone(client: Client, ns: str, gateway: Gateway) -> None:
    live = make_agent(client, ns, "live", memory={"enabled": True})
    kept = Owner(ns, uid_of(live), "live")
    # Left behind while the operator was away: an Agent deleted, one re-created under the same name.
    ghost = Owner(ns, "uid-of-a-deleted-agent", "ghost")
    older = Owner(ns, "uid-of-an-earlier-live", "live")
    for owner in (kept, ghost, older):
        remember(gateway, owner)
    eventually(
        lambda: not has_store(gateway, ghost) and not has_store(gateway, older),
        what="the sweep dropping the stores of Agents that are gone",
    )
    assert has_store(gateway, kept)
