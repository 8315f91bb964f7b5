"""The chart's agent policy (`policy:` values): one ConfigMap read by the API and the operator, the same
defaults as agentry_common.policy, the Secrets of the release never referable; the owner-label writers;
the workload namespace's ResourceQuota and LimitRange; the run pods' default CPU limit."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentry_common.policy import AgentPolicy, parse_quantity
from agentry_operator.settings import Settings

from .render import Obj, RenderError, env_of, find, one, render

pytestmark = pytest.mark.unit

POLICY_FILE = "/etc/agentry/policy/policy.json"
WORKLOADS = "agentry-workloads"


@pytest.fixture(scope="module")
def default() -> list[Obj]:
    return render()


def policy_of(objs: list[Obj]) -> AgentPolicy:
    data = one(objs, "ConfigMap", "agentry-policy")["data"]["policy.json"]
    return AgentPolicy.model_validate(json.loads(data))


def container(objs: list[Obj], name: str) -> Obj:
    return dict(one(objs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0])


def test_chart_defaults_are_the_policys_defaults_plus_the_release_secrets(default: list[Obj]) -> None:
    policy = policy_of(default)
    assert policy.model_copy(update={"secrets": AgentPolicy().secrets}) == AgentPolicy()
    assert policy.secrets.never_referable_labels == AgentPolicy().secrets.never_referable_labels
    assert set(policy.secrets.never_referable_names) == {
        "llm-keys",  # gateway.providerKeys.existingSecret
        "agentry-token-keys",
        "agentry-webhook-tls",
        "agentry-api-session",
    }


def test_api_and_operator_read_the_same_file_and_roll_on_a_change(default: list[Obj]) -> None:
    for name in ("agentry-api", "agentry-operator"):
        c = container(default, name)
        assert env_of(c)["AGENTRY_POLICY_FILE"] == POLICY_FILE, name
        mount = next(m for m in c["volumeMounts"] if m["name"] == "policy")
        assert mount == {"name": "policy", "mountPath": "/etc/agentry/policy", "readOnly": True}
        pod = one(default, "Deployment", name)["spec"]["template"]
        assert {"name": "policy", "configMap": {"name": "agentry-policy"}} in pod["spec"]["volumes"]
        assert pod["metadata"]["annotations"]["checksum/policy"]
    before = one(default, "Deployment", "agentry-api")["spec"]["template"]["metadata"]["annotations"]
    after = one(render(policy__maxRetries="1"), "Deployment", "agentry-api")["spec"]["template"]["metadata"]
    assert after["annotations"]["checksum/policy"] != before["checksum/policy"]


def test_an_admin_widens_the_policy_through_values() -> None:
    objs = render(
        policy__maxTimeoutSeconds="7200",
        policy__priority__max="9",
        **{"policy__allowedBaseURLs[0]": "https://llm.corp/", "policy__secrets__neverReferableNames[0]": "x"},
    )
    policy = policy_of(objs)
    assert policy.max_timeout_seconds == 7200 and policy.priority.max == 9
    assert policy.allowed_base_urls == ["https://llm.corp/"]
    assert "x" in policy.secrets.never_referable_names and "llm-keys" in policy.secrets.never_referable_names


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        ({"policy.maxTimeout": "5"}, "maxTimeout"),
        ({"policy.allowedTools[0]": "rm"}, "allowedTools"),
        ({"policy.priority.max": "11"}, "max"),
        ({"policy.allowedModels[0]": "claude"}, "allowedModels"),
        ({"policy.maxResources.cpu": "lots"}, "cpu"),
    ],
)
def test_schema_refuses_a_bad_policy(sets: dict[str, str], error: str) -> None:
    with pytest.raises(RenderError, match=error):
        render(**{k.replace(".", "__"): v for k, v in sets.items()})


def test_only_the_identities_that_act_for_owners_may_write_the_owner_label(default: list[Obj]) -> None:
    """The API (dashboard users' objects), the operator (workflow steps, timers, backfill) and the
    schedule tick of the workload namespace (docs/security.md, "Who may start a run"); nobody else."""
    env = env_of(container(default, "agentry-operator"))
    writers = json.loads(env["AGENTRY_OWNER_LABEL_WRITERS"])
    ticker = f"system:serviceaccount:{WORKLOADS}:agentry-tick"
    operator = "system:serviceaccount:agentry-system:agentry-operator"
    assert writers == ["system:serviceaccount:agentry-system:agentry-api", operator, ticker]
    config = Settings(owner_label_writers=env["AGENTRY_OWNER_LABEL_WRITERS"])
    assert config.owner_label_writers == writers
    assert env["AGENTRY_OWNER_LABEL_TRUST_MASTERS"] == "true"
    objs = render(
        **{
            "operator__webhook__ownerLabelWriters[0]": "ci-bot",
            "operator__webhook__trustClusterAdmins": "false",
        }
    )
    env = env_of(container(objs, "agentry-operator"))
    assert json.loads(env["AGENTRY_OWNER_LABEL_WRITERS"]) == [*writers, "ci-bot"]
    assert env["AGENTRY_OWNER_LABEL_TRUST_MASTERS"] == "false"
    no_api = render(api__enabled="false")
    no_api_writers = json.loads(env_of(container(no_api, "agentry-operator"))["AGENTRY_OWNER_LABEL_WRITERS"])
    assert no_api_writers == [operator, ticker]


def test_workload_namespace_has_a_quota_and_limit_range(default: list[Obj]) -> None:
    quota = one(default, "ResourceQuota")
    assert quota["metadata"]["namespace"] == WORKLOADS
    assert {"requests.cpu", "limits.cpu", "limits.memory", "pods"} <= set(quota["spec"]["hard"])
    (limits,) = one(default, "LimitRange")["spec"]["limits"]
    assert limits["type"] == "Container" and limits["default"]["cpu"] == "1"
    # What the policy lets an Agent ask for fits under the LimitRange's maximum.
    policy = AgentPolicy()
    for resource, most in policy.max_resources.items():
        assert parse_quantity(limits["max"][resource]) >= parse_quantity(most), resource
    off = render(workloads__resourceQuota__enabled="false", workloads__limitRange__enabled="false")
    assert find(off, "ResourceQuota") == [] and find(off, "LimitRange") == []


def test_every_container_of_the_workload_namespace_gets_a_disk_limit(default: list[Obj]) -> None:
    """The kubelet evicts a pod over its ephemeral-storage limit; without a default a run pod had none."""
    (limits,) = one(default, "LimitRange")["spec"]["limits"]
    storage = {
        k: parse_quantity(limits[k]["ephemeral-storage"]) for k in ("defaultRequest", "default", "max")
    }
    assert storage["defaultRequest"] <= storage["default"] <= storage["max"], storage
    # Room for the run pod's two bounded emptyDirs (/workspace and /tmp) is the operator's sizeLimit.
    assert storage["default"] >= parse_quantity(Settings().workspace_size_limit)
    (limits,) = one(render(**{"workloads__limitRange__default__ephemeral-storage": "5Gi"}), "LimitRange")[
        "spec"
    ]["limits"]
    assert limits["default"]["ephemeral-storage"] == "5Gi"
    with pytest.raises(RenderError, match="ephemeral-storage"):
        render(**{"workloads__limitRange__max__ephemeral-storage": "lots"})


def test_run_pods_get_a_default_cpu_limit(default: list[Obj]) -> None:
    env: dict[str, Any] = env_of(container(default, "agentry-operator"))
    assert env["AGENTRY_DEFAULT_CPU_LIMIT"] == "1" == Settings().default_cpu_limit
    assert (
        env_of(container(render(operator__defaultCpuLimit="500m"), "agentry-operator"))[
            "AGENTRY_DEFAULT_CPU_LIMIT"
        ]
        == "500m"
    )


def test_cloud_scheduler_is_allowed_only_where_an_admin_set_it_up(default: list[Obj]) -> None:
    assert [b.value for b in policy_of(default).allowed_schedule_backends] == ["CronJob", "Operator"]
    gke = render(
        operator__cloudScheduler__location="europe-west1",
        operator__cloudScheduler__targetUrl="https://agentry.example.com",
        operator__cloudScheduler__serviceAccount="invoker@my-agentry-project.iam.gserviceaccount.com",
        gcp__projectId="my-agentry-project",
    )
    backends = [b.value for b in policy_of(gke).allowed_schedule_backends]
    assert backends == ["CronJob", "Operator", "CloudScheduler"]
