"""The warm pool's pure parts: a pool's warm Job, a run's profile, why a run needs a Job of its own, and
the claim's patches and payload (operator/agentry_operator/pool/builders.py)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from agentry_common import constants as c
from agentry_common import pool as p
from agentry_common.pool import PoolProfile
from agentry_operator.builders.job import build_job
from agentry_operator.pool import builders as b
from agentry_operator.settings import Settings

pytestmark = pytest.mark.unit

GOVERNED = Settings(gateway_url="http://gw:8090", token_keys="k1:secret")
AGENT: dict[str, Any] = {
    "metadata": {"name": "hello", "namespace": "w", "uid": "a-uid", "generation": 1},
    "spec": {"instructions": "hi", "model": {"name": "m"}, "timeoutSeconds": 120},
}
EXECUTION: dict[str, Any] = {
    "metadata": {"name": "hello-x1", "namespace": "w", "uid": "e-uid", "generation": 1},
    "spec": {"agentRef": {"name": "hello"}, "input": "say hi", "trigger": "Manual"},
}
POOL = PoolProfile(name="default", namespaces=("w",), max=2)


def run_job(agent: dict[str, Any] = AGENT, config: Settings = GOVERNED) -> dict[str, Any]:
    return build_job(EXECUTION, agent, "corr", config, token_secret="hello-x1-abc-token")


def test_a_warm_job_is_a_run_pod_without_the_run() -> None:
    warm: dict[str, Any] = b.warm_job(POOL, "w", GOVERNED, "pool-default-1")
    run = run_job()
    pod, run_pod = warm["spec"]["template"]["spec"], run["spec"]["template"]["spec"]
    box, run_box = pod["containers"][0], run_pod["containers"][0]
    # The same sandbox as a run's pod: security contexts, resources, image, grace, failure policy.
    assert pod["securityContext"] == run_pod["securityContext"]
    assert box["securityContext"] == run_box["securityContext"]
    assert (box["image"], box["resources"]) == (run_box["image"], run_box["resources"])
    assert pod["automountServiceAccountToken"] is False
    assert warm["spec"]["podFailurePolicy"] == run["spec"]["podFailurePolicy"]
    # Nothing of a run: no token, no run env, no annotations, no run labels.
    names = {e["name"] for e in box["env"]}
    assert names == {"HOME", p.ENV_CLAIM_PORT}
    assert "annotations" not in warm["spec"]["template"]["metadata"]
    assert warm["metadata"]["labels"] == {c.LABEL_MANAGED_BY: c.MANAGED_BY, p.LABEL_POOL: "default"}
    assert c.LABEL_EXECUTION not in warm["spec"]["template"]["metadata"]["labels"]
    assert box["command"][-1] == p.WARM_FLAG
    # One pod only; its inputs come at claim into an emptyDir, its key from its own Secret.
    assert warm["spec"]["backoffLimit"] == 0
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"] == {"name": "config", "emptyDir": {"sizeLimit": b.CONFIG_SIZE}}
    assert volumes[b.KEY_VOLUME]["secret"]["secretName"] == "pool-default-1-claim"
    # The same profile as a run of an Agent that sets no resources.
    assert b.profile_of(warm) == b.profile_of(run)


def test_profiles_differ_by_resources_and_runtime_class() -> None:
    big = {**AGENT, "spec": {**AGENT["spec"], "resources": {"requests": {"memory": "2Gi"}}}}
    assert b.profile_of(run_job(big)) != b.profile_of(run_job())
    gvisor = PoolProfile(name="gvisor", namespaces=("w",), runtime_class_name="gvisor")
    warm: dict[str, Any] = b.warm_job(gvisor, "w", GOVERNED, "pool-gvisor-1")
    assert warm["spec"]["template"]["spec"]["runtimeClassName"] == "gvisor"
    assert b.profile_of(warm) != b.profile_of(run_job())
    sized = PoolProfile(name="big", namespaces=("w",), resources=p.Resources(requests={"memory": "2Gi"}))
    assert b.profile_of(b.warm_job(sized, "w", GOVERNED, "pool-big-1")) == b.profile_of(run_job(big))


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        ({"retries": 1}, "spec.retries"),
        ({"workspace": {"persistent": True}}, "kept workspace"),
        ({"secrets": [{"env": "TOKEN", "secretKeyRef": {"name": "s", "key": "k"}}]}, "spec.secrets"),
    ],
)
def test_runs_that_need_a_job_of_their_own_say_why(extra: dict[str, Any], why: str) -> None:
    agent = {**AGENT, "spec": {**AGENT["spec"], **extra}}
    reason = b.needs_job(run_job(agent), "hello-x1-abc-token")
    assert reason is not None and why in reason
    assert b.needs_job(run_job(), "hello-x1-abc-token") is None


def test_the_claim_carries_the_run_env_resolved_and_its_inputs() -> None:
    job = run_job()
    token = {"token": "tok-123", "state-key": "sk"}
    request = b.claim_request(EXECUTION, job, token)
    assert request.claim == "e-uid" and request.execution == "hello-x1"
    assert request.env["ANTHROPIC_API_KEY"] == "tok-123" == request.env["OPENAI_API_KEY"]
    assert request.env[c.ENV_EXECUTION] == "hello-x1"
    assert request.env[c.ENV_DEADLINE] == "120"
    assert json.loads(request.files[c.AGENT_FILE])["spec"]["instructions"] == "hi"
    assert request.files[c.INPUT_FILE] == "say hi"


def test_the_take_makes_the_warm_job_the_runs_with_a_precondition() -> None:
    job = run_job()
    started = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    warm = {
        "metadata": {"name": "pool-default-1", "resourceVersion": "42"},
        "status": {"startTime": "2026-01-01T12:00:00Z"},
    }
    patch = b.take_patch(job, warm, started + dt.timedelta(seconds=100))
    meta = patch["metadata"]
    assert isinstance(meta, dict)
    assert meta["resourceVersion"] == "42"
    assert meta["annotations"][c.ANNOTATION_EXECUTION] == "hello-x1"
    assert meta["labels"][c.LABEL_EXECUTION] == "hello-x1"
    assert meta["ownerReferences"][0]["uid"] == "e-uid"
    # The run's deadline counts from its claim, not from when the warm Job started.
    assert patch["spec"] == {"activeDeadlineSeconds": 100 + job["spec"]["activeDeadlineSeconds"]}
    assert b.claimed_by({"metadata": meta}) == "hello-x1"
    assert b.claimed_by(warm) == ""
    labels = b.pod_patch(job)["metadata"]
    assert isinstance(labels, dict) and labels["labels"][c.LABEL_EXECUTION] == "hello-x1"


def test_the_claim_secret_is_owned_by_its_job() -> None:
    job = {"metadata": {"name": "pool-default-1", "namespace": "w", "uid": "j-uid", "labels": {"a": "b"}}}
    secret = b.claim_secret(job, "00" * 32)
    assert secret["metadata"]["name"] == "pool-default-1-claim"  # type: ignore[index]
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "j-uid"  # type: ignore[index]
    assert secret["immutable"] is True
