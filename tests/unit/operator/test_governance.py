"""Governance on the operator side, without a cluster: the admission request and what its answer does,
the run token's Secret, and the Job of a governed run."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from agentry_common.governance import AdmissionRequest
from agentry_common.models import Phase, SecretSpec
from agentry_common.tokens import Keyring, verify
from agentry_operator.builders.agent_status import spec_errors
from agentry_operator.builders.governance import (
    Answer,
    admission_request,
    build_token_secret,
    decide,
    ended_with_token,
    governed_secrets,
    max_wait_seconds,
    priority_of,
    record_before_job,
)
from agentry_operator.builders.job import build_job, child_labels, owner_reference
from agentry_operator.conditions import get_condition
from agentry_operator.handlers.admission import Governance
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

KEYRING = Keyring.single("s" * 40, "2025-05")
GATEWAY = "http://agentry-gateway.agentry.svc:8090"
AGENT: dict[str, Any] = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "news", "namespace": "ns", "uid": "a-uid", "labels": {"agentry.dev/owner": "u-1"}},
    "spec": {
        "instructions": "x",
        "model": {"name": "claude-sonnet-4-6"},
        "timeoutSeconds": 600,
        "priority": 2,
        "budget": {"maxTokensPerRun": 50000, "maxCostPerRunUSD": "1.50"},
        "secrets": [
            {"env": "ANTHROPIC_API_KEY", "secretKeyRef": {"name": "keys", "key": "anthropic"}},
            {"env": "OPENAI_API_KEY", "secretManager": "projects/p/secrets/openai"},
            {"env": "SNEAKY", "secretKeyRef": {"name": "keys", "key": "anthropic"}},
            {"env": "ALSO_SNEAKY", "secretManager": "projects/p/secrets/openai"},
            {"env": "GITHUB_TOKEN", "secretKeyRef": {"name": "gh", "key": "token"}},
        ],
        "schedule": {"cron": "0 8 * * 1", "startingDeadlineSeconds": 600},
    },
}
EXECUTION: dict[str, Any] = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Execution",
    "metadata": {
        "name": "run",
        "namespace": "ns",
        "uid": "e-uid",
        "generation": 1,
        "creationTimestamp": "2025-05-20T12:00:00Z",
    },
    "spec": {"agentRef": {"name": "news"}, "trigger": "Manual"},
}
NOW = dt.datetime(2025, 5, 20, 12, 10, tzinfo=dt.UTC)


def governed(**extra: Any) -> Settings:
    values: dict[str, Any] = {"gateway_url": GATEWAY + "/", "token_keys": "2025-05:" + "s" * 40, **extra}
    return Settings(**values)


def execution(**spec: Any) -> dict[str, Any]:
    ex = copy.deepcopy(EXECUTION)
    ex["spec"].update(spec)
    return ex


# -- config ---------------------------------------------------------------------------------------


def test_governance_off_by_default_and_base_urls_follow_the_gateway() -> None:
    off = Settings()
    assert not off.governed and off.run_anthropic_base_url is None and off.run_openai_base_url is None
    on = governed()
    assert on.governed
    assert on.run_anthropic_base_url == GATEWAY
    assert on.run_openai_base_url == GATEWAY + "/v1"
    explicit = governed(anthropic_base_url="http://a", openai_base_url="http://o/v1")
    assert (explicit.run_anthropic_base_url, explicit.run_openai_base_url) == ("http://a", "http://o/v1")
    assert on.keyring().current == "2025-05"


def test_governance_without_token_keys_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="AGENTRY_TOKEN_KEYS_DIR"):
        Governance.from_config(Settings(gateway_url=GATEWAY))
    assert Governance.from_config(Settings()) is None


def test_keyring_from_a_mounted_directory(tmp_path: Any) -> None:
    (tmp_path / "2025-04").write_text("a" * 40)
    (tmp_path / "2025-05").write_text("b" * 40 + "\n")
    (tmp_path / "..data").mkdir()
    ring = Settings(gateway_url=GATEWAY, token_keys_dir=str(tmp_path)).keyring()
    assert ring.current == "2025-05" and ring.keys["2025-05"] == b"b" * 40


# -- the request ----------------------------------------------------------------------------------


def test_priority_execution_overrides_agent_default_five() -> None:
    assert priority_of(execution(), AGENT) == 2
    assert priority_of(execution(priority=9), AGENT) == 9
    assert priority_of(execution(priority=0), AGENT) == 0
    bare = {**AGENT, "spec": {k: v for k, v in AGENT["spec"].items() if k != "priority"}}
    assert priority_of(execution(), bare) == 5


def test_admission_request_body() -> None:
    body = admission_request(execution(), AGENT, governed(), NOW)
    assert body == {
        "namespace": "ns",
        "agent": "news",
        "user": "u-1",
        "execution": "run",
        "executionUid": "e-uid",  # the gateway charges admission and metering to the same subject
        "priority": 2,
        "model": "claude-sonnet-4-6",
        "maxWaitSeconds": 86400 - 600,  # the default 24 h, counted from the Execution's creation
    }
    assert AdmissionRequest.model_validate(body).subjects().execution == "ns/run/e-uid"
    unowned = {**AGENT, "metadata": {**AGENT["metadata"], "labels": {}}}
    assert "user" not in admission_request(execution(), unowned, governed(), NOW)


def test_max_wait_of_a_scheduled_run_is_what_is_left_of_its_starting_deadline() -> None:
    ex = execution(trigger="Schedule", scheduledTime="2025-05-20T12:08:00Z")
    assert max_wait_seconds(ex, AGENT, governed(), NOW) == 600 - 120
    late = execution(trigger="Schedule", scheduledTime="2025-05-20T11:00:00Z")
    assert max_wait_seconds(late, AGENT, governed(), NOW) == 0
    # A manual run of a scheduled Agent is not bound by the schedule's deadline.
    assert max_wait_seconds(execution(), AGENT, governed(admission_max_wait_seconds=3600), NOW) == 3000


# -- the answer -----------------------------------------------------------------------------------

WHY = "throttle zone: user u-1 5h tokens at 86.0 % (1,720,000 of 2,000,000, policy users)"


def answer(action: str, **extra: Any) -> Answer:
    return Answer(decision={"action": action, "zone": "throttle", "reason": WHY, **extra})


def cond(verdict: Any, type_: str) -> dict[str, Any]:
    found = get_condition(verdict.conditions, type_)
    assert found is not None, f"no {type_} condition in {verdict.conditions}"
    return found


def test_allow_starts_with_budget_conditions_false() -> None:
    v = decide(
        Answer(decision={"action": "allow", "zone": "normal", "reason": "normal zone"}),
        [],
        trigger="Manual",
        config=governed(),
    )
    assert v.start and v.retry_seconds is None
    assert cond(v, "BudgetExceeded")["status"] == "False"
    assert cond(v, "BudgetThrottled")["status"] == "False"


def test_throttle_starts_with_budget_throttled_and_the_reason() -> None:
    v = decide(answer("throttle", model="claude-haiku-4-5"), [], trigger="Manual", config=governed())
    assert v.start
    throttled = cond(v, "BudgetThrottled")
    assert (throttled["status"], throttled["reason"]) == ("True", "ThrottleZone")
    assert WHY in throttled["message"] and "claude-haiku-4-5" in throttled["message"]


def test_only_a_throttled_start_is_recorded_before_its_job() -> None:
    throttled = decide(answer("throttle", model="claude-haiku-4-5"), [], trigger="Manual", config=governed())
    assert record_before_job(throttled, [])
    assert not record_before_job(throttled, throttled.conditions)  # recorded already: one write
    allowed = decide(answer("allow"), [], trigger="Manual", config=governed())
    assert not record_before_job(allowed, [])  # the start's own status write carries it
    waiting = decide(answer("wait"), [], trigger="Manual", config=governed())
    assert not record_before_job(waiting, [])


def test_the_gateway_is_told_once_when_a_run_that_had_a_job_ends() -> None:
    running = {"status": {"phase": "Running", "jobName": "run-1-abc"}}
    assert ended_with_token(running, {"phase": "Succeeded"})
    assert ended_with_token(running, {"phase": "Cancelled", "reason": "Cancelled"})
    assert not ended_with_token(running, {"phase": "Running", "message": "still going"})
    assert not ended_with_token(running, {"conditions": []})  # no phase in the patch
    done = {"status": {"phase": "Succeeded", "jobName": "run-1-abc"}}
    assert not ended_with_token(done, {"phase": "Succeeded"})  # told already
    refused = {"status": {"phase": "Pending"}}
    assert not ended_with_token(refused, {"phase": "Failed", "reason": "BudgetExceeded"})  # no token
    assert ended_with_token(refused, {"phase": "Failed", "jobName": "run-1-abc"})


def test_wait_stays_pending_with_budget_wait_and_retries_after_the_gateways_delay() -> None:
    v = decide(answer("wait", retryAfterSeconds=42), [], trigger="Manual", config=governed())
    assert not v.start and v.phase is Phase.PENDING
    assert (v.reason, v.message, v.retry_seconds) == ("BudgetWait", WHY, 42)
    exceeded = cond(v, "BudgetExceeded")
    assert (exceeded["status"], exceeded["reason"], exceeded["message"]) == ("True", "BudgetWait", WHY)
    # A long wait is re-checked at most every admission_recheck_seconds.
    long = decide(answer("wait", retryAfterSeconds=3412), [], trigger="Manual", config=governed())
    assert long.retry_seconds == 300


@pytest.mark.parametrize(
    ("trigger", "phase"), [("Manual", Phase.FAILED), ("API", Phase.FAILED), ("Schedule", Phase.SKIPPED)]
)
def test_refuse_ends_the_run(trigger: str, phase: Phase) -> None:
    v = decide(answer("refuse"), [], trigger=trigger, config=governed())
    assert not v.start and v.phase is phase and phase.terminal
    assert (v.reason, v.message, v.retry_seconds) == ("BudgetExceeded", WHY, None)
    assert cond(v, "BudgetExceeded")["status"] == "True"


def test_gateway_unavailable_stays_pending_unknown_and_retries_in_30_s() -> None:
    v = decide(Answer(problem="ConnectError"), [], trigger="Manual", config=governed())
    assert not v.start and v.phase is Phase.PENDING and v.retry_seconds == 30
    assert v.reason == "GatewayUnavailable" and "ConnectError" in v.message
    exceeded = cond(v, "BudgetExceeded")
    assert (exceeded["status"], exceeded["reason"]) == ("Unknown", "GatewayUnavailable")
    bad = decide(
        Answer(problem="HTTP 401: bad token", unavailable=False), [], trigger="Manual", config=governed()
    )
    assert bad.reason == "AdmissionFailed" and cond(bad, "BudgetExceeded")["status"] == "Unknown"
    odd = decide(Answer(decision={"action": "maybe"}), [], trigger="Manual", config=governed())
    assert not odd.start and odd.reason == "AdmissionFailed" and odd.retry_seconds == 30
    assert "unknown admission action 'maybe'" in odd.message
    # A known action with a field the contract does not allow: as unreadable as an unknown one.
    bad_zone = decide(
        Answer(decision={"action": "throttle", "zone": "purple"}), [], trigger="Manual", config=governed()
    )
    assert not bad_zone.start and bad_zone.reason == "AdmissionFailed" and bad_zone.retry_seconds == 30
    assert cond(bad_zone, "BudgetExceeded")["status"] == "Unknown"


def test_release_after_a_wait_keeps_one_condition_per_type() -> None:
    waited = decide(answer("wait", retryAfterSeconds=5), [], trigger="Manual", config=governed())
    allowed = decide(
        Answer(decision={"action": "allow", "reason": "ok"}),
        waited.conditions,
        trigger="Manual",
        config=governed(),
    )
    types = [c["type"] for c in allowed.conditions]
    assert sorted(types) == ["BudgetExceeded", "BudgetThrottled"]
    assert cond(allowed, "BudgetExceeded")["status"] == "False"


# The admission call itself (service token, body, 503 and refused connections) runs against a real
# gateway: tests/integration/operator/test_standins_admission_gateway.py.


# -- token Secret and Job -------------------------------------------------------------------------


def test_run_token_carries_the_execution_and_its_limits() -> None:
    gov = Governance(governed(), KEYRING)
    claims = verify(gov.run_token(execution(priority=7), AGENT), KEYRING, expected="run")
    assert (claims.namespace, claims.execution, claims.execution_uid, claims.agent) == (
        "ns",
        "run",
        "e-uid",
        "news",
    )
    assert (claims.user, claims.priority) == ("u-1", 7)
    assert claims.limits.tokens == 50000 and claims.limits.cost_usd == "1.50"
    assert claims.exp - claims.iat == 630 + 600  # the Job's deadline plus the margin


def test_token_secret_is_owned_by_the_execution_and_labelled_like_the_job() -> None:
    labels = child_labels("news", "run", "Manual")
    secret = build_token_secret(
        EXECUTION, "run-abc-token", "agt1.x.y", labels, owner_reference(EXECUTION), "k" * 64
    )
    assert secret["kind"] == "Secret"
    assert secret["stringData"] == {"token": "agt1.x.y", "state-key": "k" * 64}
    assert secret["metadata"]["labels"] == labels and secret["metadata"]["namespace"] == "ns"
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("Execution", "e-uid", True)


def test_governed_job_has_the_token_and_no_provider_key() -> None:
    job = build_job(EXECUTION, AGENT, "corr", governed(), token_secret="run-abc-token")
    ctr = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in ctr["env"]}
    ref = {"secretKeyRef": {"name": "run-abc-token", "key": "token"}}
    assert env["ANTHROPIC_API_KEY"] == {"name": "ANTHROPIC_API_KEY", "valueFrom": ref}
    assert env["OPENAI_API_KEY"] == {"name": "OPENAI_API_KEY", "valueFrom": ref}
    state_ref = {"secretKeyRef": {"name": "run-abc-token", "key": "state-key", "optional": True}}
    assert env["AGENTRY_STATE_KEY"] == {"name": "AGENTRY_STATE_KEY", "valueFrom": state_ref}
    assert env["ANTHROPIC_BASE_URL"]["value"] == GATEWAY
    assert env["OPENAI_BASE_URL"]["value"] == GATEWAY + "/v1"
    # No reference to the provider keys' Secret (under any name), no Secret Manager ref to them.
    refs = [e["valueFrom"]["secretKeyRef"] for e in ctr["env"] if "valueFrom" in e]
    assert {"name": "keys", "key": "anthropic"} not in refs
    assert "SNEAKY" not in env and "ALSO_SNEAKY" not in env and "AGENTRY_SECRET_MANAGER_REFS" not in env
    assert env["GITHUB_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "gh", "key": "token"}}
    assert "s" * 40 not in json.dumps(job)  # the keyring never reaches the Job
    with pytest.raises(ValueError, match="token Secret"):
        build_job(EXECUTION, AGENT, "corr", governed())


def test_ungoverned_job_is_unchanged() -> None:
    job = build_job(EXECUTION, AGENT, "corr", Settings())
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ANTHROPIC_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "keys", "key": "anthropic"}}
    assert "ANTHROPIC_BASE_URL" not in env and "SNEAKY" in env


def test_governed_secrets_keeps_unrelated_entries() -> None:
    secrets = [SecretSpec.model_validate(s) for s in AGENT["spec"]["secrets"]]
    assert [s.env for s in governed_secrets(secrets)] == ["GITHUB_TOKEN"]


def test_model_base_url_away_from_the_gateway_is_invalid_when_governed() -> None:
    spec = {"instructions": "x", "model": {"name": "m", "baseURL": "http://lmstudio.lan:1234/v1"}}
    assert spec_errors(spec) == []
    errors = spec_errors(spec, GATEWAY)
    assert len(errors) == 1 and "spec.model.baseURL" in errors[0] and "bypasses the LLM gateway" in errors[0]
    fallback = {
        "instructions": "x",
        "model": {"name": "m", "fallbacks": [{"name": "f", "baseURL": "http://x"}]},
    }
    assert "spec.model.fallbacks[0].baseURL" in spec_errors(fallback, GATEWAY)[0]
    through = {"instructions": "x", "model": {"name": "m", "baseURL": GATEWAY + "/v1"}}
    assert spec_errors(through, GATEWAY + "/") == []
