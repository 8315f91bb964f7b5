"""Agent memory in the operator's pure parts: the run token's `mem`/`memn` claims and the pod's
ENV_MEMORY_URL only for an Agent with spec.memory.enabled and the gateway on, the refusal naming
spec.memory without the gateway, and the sweep's rule (drop stores whose Agent is gone or was
re-created; keep the others, and every store when the gateway cannot be asked)."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from lightkube import ApiError

from agentry_common.memory import ENV_MEMORY_URL, MEMORY_DROP_PATH, MEMORY_STORES_PATH, NEEDS_GATEWAY
from agentry_common.tokens import Claims, Keyring, mint_run_token, verify
from agentry_operator.builders.agent_status import spec_errors
from agentry_operator.builders.job import build_job
from agentry_operator.governance import Governance
from agentry_operator.handlers import memory as handler
from agentry_operator.handlers.state import State
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

GATEWAY = "http://agentry-gateway.agentry.svc:8090"
KEYRING = Keyring.single("n" * 40, "2025-05")
SPEC = {"instructions": "x", "model": {"name": "m"}}
EXECUTION: dict[str, Any] = {
    "metadata": {"name": "run-1", "namespace": "ns", "uid": "e-uid"},
    "spec": {"agentRef": {"name": "news"}, "trigger": "Manual"},
}
LOG = logging.getLogger("test")


def agent(memory: dict[str, Any] | None = None, uid: str = "a-uid") -> dict[str, Any]:
    spec = {**SPEC, **({"memory": memory} if memory else {})}
    return {"metadata": {"name": "news", "namespace": "ns", "uid": uid}, "spec": spec}


def governed() -> Settings:
    return Settings(gateway_url=GATEWAY, token_keys="2025-05:" + "s" * 40)


def env_names(body: dict[str, Any], config: Settings) -> dict[str, str]:
    job = build_job(EXECUTION, body, "corr", config, token_secret="t" if config.governed else None)
    return {e["name"]: e.get("value", "") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_only_an_agent_with_memory_gets_the_store_in_its_token_and_env() -> None:
    gov = Governance(governed(), KEYRING)
    keeper = agent({"enabled": True, "maxEntries": 7})
    claims = verify(gov.run_token(EXECUTION, keeper), KEYRING, expected="run")
    assert (claims.memory, claims.memory_limit) == ("a-uid", 7)
    assert env_names(keeper, governed())[ENV_MEMORY_URL] == GATEWAY
    plain = verify(gov.run_token(EXECUTION, agent()), KEYRING, expected="run")
    assert (plain.memory, plain.memory_limit) == ("", 0)
    assert ENV_MEMORY_URL not in env_names(agent(), governed())


def test_the_memory_claims_round_trip_and_a_limit_needs_a_store() -> None:
    token = mint_run_token(
        KEYRING,
        namespace="ns",
        execution="r",
        agent="a",
        active_deadline_seconds=60,
        memory="u",
        memory_limit=3,
    )
    assert verify(token, KEYRING).to_wire()["memn"] == 3
    bare = mint_run_token(
        KEYRING, namespace="ns", execution="r", agent="a", active_deadline_seconds=60, memory_limit=3
    )
    assert "memn" not in verify(bare, KEYRING).to_wire()
    wire = {**verify(token, KEYRING).to_wire(), "memn": "many"}
    with pytest.raises(Exception, match="memn"):
        Claims.from_wire(wire)


def test_memory_without_the_gateway_is_refused_naming_the_field() -> None:
    spec = {**SPEC, "memory": {"enabled": True}}
    assert spec_errors(spec, None) == [NEEDS_GATEWAY]
    assert NEEDS_GATEWAY.startswith("spec.memory.enabled:")
    assert spec_errors(spec, GATEWAY) == []
    assert spec_errors({**SPEC, "memory": {"enabled": False}}, None) == []


class FakeKube:
    """The Agents the API server has: name -> uid."""

    def __init__(self, agents: dict[str, str], forbidden: tuple[str, ...] = ()) -> None:
        self.agents, self.forbidden = agents, forbidden

    async def get(self, res: Any, name: str, namespace: str) -> Any:
        if namespace in self.forbidden:
            raise ApiError(response=httpx.Response(403, json={"code": 403, "message": "forbidden"}))
        if name not in self.agents:
            raise ApiError(response=httpx.Response(404, json={"code": 404, "message": "not found"}))
        return {"metadata": {"name": name, "namespace": namespace, "uid": self.agents[name]}}


def gateway_with(stores: list[dict[str, str]], dropped: list[Any], status: int = 200) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == MEMORY_STORES_PATH:
            return httpx.Response(status, json={"stores": stores})
        assert request.url.path == MEMORY_DROP_PATH
        dropped.extend(json.loads(request.content)["stores"])
        return httpx.Response(200, json={"dropped": 1})

    return httpx.AsyncClient(base_url=GATEWAY, transport=httpx.MockTransport(answer))


async def test_the_sweep_drops_only_stores_whose_agent_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = [
        {"namespace": "ns", "agentUid": "live-uid", "agent": "live"},
        {"namespace": "ns", "agentUid": "old-uid", "agent": "live"},  # re-created since
        {"namespace": "ns", "agentUid": "ghost-uid", "agent": "ghost"},  # deleted
        {"namespace": "elsewhere", "agentUid": "x-uid", "agent": "x"},  # not readable: kept
        {"namespace": "ns", "agentUid": "anon-uid", "agent": ""},  # no name: cannot tell, kept
    ]
    dropped: list[Any] = []
    state = State()
    state.governance = Governance(governed(), KEYRING, http=gateway_with(stores, dropped))
    monkeypatch.setattr(handler.kube, "to_dict", lambda obj: obj)
    kube = FakeKube({"live": "live-uid"}, forbidden=("elsewhere",))
    assert await handler.sweep_memories(kube, state, LOG) == 2  # type: ignore[arg-type]
    assert sorted(d["agentUid"] for d in dropped) == ["ghost-uid", "old-uid"]


async def test_the_sweep_keeps_everything_when_the_gateway_cannot_list() -> None:
    dropped: list[Any] = []
    state = State()
    state.governance = Governance(governed(), KEYRING, http=gateway_with([], dropped, status=503))
    assert await handler.sweep_memories(FakeKube({}), state, LOG) == 0  # type: ignore[arg-type]
    assert dropped == []
