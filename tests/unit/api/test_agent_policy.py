"""The API's use of the agent policy (AgentService.check_policy): labels, compatibility settings, 422s."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_api.services.agents import AgentService
from agentry_api.services.errors import Invalid
from agentry_api.settings import Settings
from agentry_common import constants as c
from agentry_common.models import AgentSpec
from agentry_common.policy import LABEL_REFERABLE, AgentPolicy

pytestmark = pytest.mark.unit


def service(policy: AgentPolicy | None = None, **settings: Any) -> AgentService:
    return AgentService(None, None, None, Settings(**settings), policy or AgentPolicy())  # type: ignore[arg-type]


def spec(**fields: Any) -> AgentSpec:
    return AgentSpec.model_validate({"instructions": "x", "model": {"name": "m"}, **fields})


def secret(name: str) -> list[dict[str, Any]]:
    return [{"env": "K", "secretKeyRef": {"name": name, "key": "k"}}]


def test_opted_in_secrets_pass_others_are_422_naming_rule_and_field() -> None:
    s = service()
    s.check_policy(spec(secrets=secret("s")), {"s": {LABEL_REFERABLE: "true"}})
    with pytest.raises(Invalid) as err:
        s.check_policy(spec(secrets=secret("s")), {"s": {}})
    assert err.value.loc == ["body", "spec", "secrets", 0, "secretKeyRef", "name"]
    assert "policy rule secrets.optIn" in err.value.msg and "allowed: none by name" in err.value.msg


def test_allowed_secret_names_opt_in_by_name_but_never_a_run_token() -> None:
    s = service(allowed_secret_names=["shared", "run1-token"])
    s.check_policy(spec(secrets=secret("shared")))  # no labels known: the name alone opts it in
    token = {"run1-token": {c.LABEL_MANAGED_BY: c.MANAGED_BY}}
    with pytest.raises(Invalid) as err:
        s.check_policy(spec(secrets=secret("run1-token")), token)
    assert "secrets.neverReferable" in err.value.msg


def test_allowed_base_urls_widen_the_policy() -> None:
    s = service(allowed_base_urls=["http://llm.local/v1"])
    assert s.policy.allowed_base_urls == ["http://llm.local/v1"]
    s.check_policy(spec(model={"name": "m", "baseURL": "http://llm.local/v1"}))
    with pytest.raises(Invalid) as err:
        s.check_policy(spec(model={"name": "m", "baseURL": "http://other"}))
    assert err.value.loc == ["body", "spec", "model", "baseURL"] and "allowedBaseURLs" in err.value.msg


def test_limits_come_from_the_policy() -> None:
    s = service(AgentPolicy(max_timeout_seconds=600))
    with pytest.raises(Invalid) as err:
        s.check_policy(spec(timeoutSeconds=900))
    assert err.value.loc == ["body", "spec", "timeoutSeconds"] and "maxTimeoutSeconds" in err.value.msg
    with pytest.raises(Invalid) as err:
        service().check_policy(spec(priority=9))
    assert err.value.loc == ["body", "spec", "priority"]


def test_with_the_gateway_runs_keep_checkpoints_and_may_run_past_the_plain_cap() -> None:
    policy = AgentPolicy(max_timeout_seconds=3600, max_checkpointed_timeout_seconds=7200)
    governed = service(policy, gateway_url="http://gateway:8090")
    governed.check_policy(spec(timeoutSeconds=5400))  # within the checkpointed cap
    with pytest.raises(Invalid) as err:
        governed.check_policy(spec(timeoutSeconds=9000))
    assert "maxCheckpointedTimeoutSeconds" in err.value.msg
    with pytest.raises(Invalid) as err:  # without the gateway: no checkpoints, the plain cap
        service(policy).check_policy(spec(timeoutSeconds=5400))
    assert "maxTimeoutSeconds" in err.value.msg
