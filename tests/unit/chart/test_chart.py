"""The Helm chart without a cluster: lint, schema-validated renders of every ci/ values file, switches."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from agentry_operator.settings import Settings

from .render import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    NAMESPACE,
    Obj,
    RenderError,
    env_of,
    find,
    load_all,
    one,
    pod_specs,
    render,
    render_text,
    run_helm,
)

pytestmark = pytest.mark.unit

WORKLOADS = "agentry-workloads"
# Custom resources of other projects the chart may render; their CRDs are not in Kubernetes' schemas.
FOREIGN_KINDS = {"KopfPeering", "ClusterKopfPeering", "Certificate", "Issuer"}
# Operator settings the chart passes before agentry_operator.settings knows them (see the chart's docs).
PENDING_OPERATOR_SETTINGS = {
    "AGENTRY_WEBHOOK_MANAGED",
    "AGENTRY_WORKLOAD_SERVICE_ACCOUNT",
    "AGENTRY_GATEWAY_URL",
    "AGENTRY_TOKEN_KEYS_DIR",
}
# The one Secrets rule the chart may grant: the operator's per-Execution run-token Secrets (gateway on).
RUN_TOKEN_SECRETS_RULE = {
    "apiGroups": [""],
    "resources": ["secrets"],
    "verbs": ["create", "get"],
}


# The agent policy's opt-in label: the API and the operator's webhook read referenced Secrets by name.
WEBHOOK_SECRETS_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
# The API: `get` for the agent policy's opt-in label and a trigger's key; `create` and `patch` for the
# Secret of a trigger's key it makes and rotates (docs/events.md, "Rotating the key").
API_SECRETS_RULE = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "patch"]}


def ci(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


@pytest.fixture(scope="module", params=[p.name for p in CI_VALUES])
def ci_render(request: pytest.FixtureRequest) -> tuple[str, str, list[Obj]]:
    text = render_text([CHART / "ci" / request.param], include_crds=True)
    return request.param, text, load_all(text)


@pytest.fixture(scope="module")
def default() -> list[Obj]:
    return render()


def operator_container(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", "agentry-operator")["spec"]["template"]["spec"]["containers"][0]


def api_container(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", "agentry-api")["spec"]["template"]["spec"]["containers"][0]


# --- lint and every values file -----------------------------------------------------------------


@pytest.mark.parametrize("values", [p.name for p in CI_VALUES])
def test_helm_lint_strict(values: str) -> None:
    result = run_helm(
        "lint", "--strict", str(CHART), f"--values={CHART / 'ci' / values}", f"--kube-version={KUBE_VERSION}"
    )
    assert "0 chart(s) failed" in result.stdout


def test_every_rendered_object_is_valid_for_kubernetes_1_34(ci_render: tuple[str, str, list[Obj]]) -> None:
    _, _, objs = ci_render
    assert objs
    for obj in objs:
        if obj["kind"] in FOREIGN_KINDS:
            continue
        # strict: unknown fields are errors, so a misspelt key cannot be silently dropped by the API server.
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_rendered_output_is_tidy(ci_render: tuple[str, str, list[Obj]]) -> None:
    _, text, objs = ci_render
    assert not re.search(r"^[ \t]+$", text, re.M), "whitespace-only lines: a template trims badly"
    for obj in objs:
        meta = obj["metadata"]
        assert len(meta["name"]) <= 63, meta["name"]
        labels = meta.get("labels", {})
        if obj["kind"] != "CustomResourceDefinition" or obj["spec"]["group"] == "agentry.dev":
            assert labels.get("app.kubernetes.io/part-of") == "agentry", f"{obj['kind']} {meta['name']}"
            assert labels.get("app.kubernetes.io/instance") == "agentry", f"{obj['kind']} {meta['name']}"


def test_every_container_has_requests_and_limits(ci_render: tuple[str, str, list[Obj]]) -> None:
    _, _, objs = ci_render
    for owner, spec in pod_specs(objs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            res = container.get("resources", {})
            where = f"{owner['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= set(res.get("requests", {})), where
            assert {"cpu", "memory"} <= set(res.get("limits", {})), where


def test_every_pod_is_pod_security_restricted(ci_render: tuple[str, str, list[Obj]]) -> None:
    _, _, objs = ci_render
    for owner, spec in pod_specs(objs):
        where = owner["metadata"]["name"]
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0, where
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["readOnlyRootFilesystem"] is True, where


def test_rbac_reads_secrets_only_for_run_tokens_and_uses_no_wildcards(
    ci_render: tuple[str, str, list[Obj]],
) -> None:
    """No Secrets at all without the gateway; with it, only the operator's run-token rule, bound like the
    operator's other namespaced rules (the workload namespace, or every namespace when clusterWide)."""
    _, _, objs = ci_render
    gateway = bool(find(objs, "Deployment", "agentry-gateway"))
    granted = []
    for role in find(objs, "Role") + find(objs, "ClusterRole"):
        for rule in role["rules"]:
            assert "*" not in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", [])
            if "secrets" in rule.get("resources", []):
                granted.append((role["metadata"]["name"], rule))
    operator = RUN_TOKEN_SECRETS_RULE if gateway else WEBHOOK_SECRETS_RULE
    webhook = bool(find(objs, "ValidatingWebhookConfiguration"))
    expected = [("agentry-api", API_SECRETS_RULE)] if find(objs, "Role", "agentry-api") else []
    expected += [("agentry-operator", operator)] if gateway or webhook else []
    assert sorted(granted, key=str) == sorted(expected, key=str)


def test_bindings_point_at_rendered_roles_and_service_accounts(ci_render: tuple[str, str, list[Obj]]) -> None:
    _, _, objs = ci_render
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in find(objs, "ServiceAccount")}
    roles = {("Role", o["metadata"]["namespace"], o["metadata"]["name"]) for o in find(objs, "Role")}
    roles |= {("ClusterRole", None, o["metadata"]["name"]) for o in find(objs, "ClusterRole")}
    for binding in find(objs, "RoleBinding") + find(objs, "ClusterRoleBinding"):
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        assert (ref["kind"], ns, ref["name"]) in roles, binding["metadata"]["name"]
        for subject in binding["subjects"]:
            assert (subject["namespace"], subject["name"]) in accounts, binding["metadata"]["name"]


def test_operator_settings_are_known_to_the_operator(ci_render: tuple[str, str, list[Obj]]) -> None:
    name, _, objs = ci_render
    env = env_of(operator_container(objs))
    settings = {k: v for k, v in env.items() if k.startswith("AGENTRY_") and isinstance(v, str)}
    fields = {f"AGENTRY_{f.upper()}" for f in Settings.model_fields}
    assert set(settings) - fields - PENDING_OPERATOR_SETTINGS == set(), name
    # And they parse: the operator would start with them.
    known = {k.removeprefix("AGENTRY_").lower(): v for k, v in settings.items() if k in fields}
    config = Settings(**known)
    tick = config.tick_service_account
    assert tick in {o["metadata"]["name"] for o in find(objs, "ServiceAccount")}


# --- switches ----------------------------------------------------------------------------------


def test_defaults_render_the_whole_platform(default: list[Obj]) -> None:
    kinds = sorted({o["kind"] for o in default})
    assert kinds == sorted(
        {
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "LimitRange",
            "Namespace",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "ResourceQuota",
            "Role",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ValidatingWebhookConfiguration",
        }
    )
    deployment = one(default, "Deployment", "agentry-operator")
    assert deployment["spec"]["replicas"] == 1
    # Leader election by default: a rolling update is safe (the old leader releases the Lease).
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    container = operator_container(default)
    assert container["args"] == ["--namespace=agentry-workloads", "--liveness=http://0.0.0.0:8080/healthz"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "health": 8080,
        "metrics": 9090,
        "webhook": 9443,
    }
    # Not in the release namespace: Helm's --create-namespace owns that one.
    assert [n["metadata"]["name"] for n in find(default, "Namespace")] == [WORKLOADS]


def test_crds_are_on_and_kept_by_default(default: list[Obj]) -> None:
    crds = find(default, "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in crds) == [
        "agents.agentry.dev",
        "executions.agentry.dev",
        "triggers.agentry.dev",
        "workflowruns.agentry.dev",
        "workflows.agentry.dev",
    ]
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crds_keep_false_drops_the_policy() -> None:
    for crd in find(render(crds__keep="false"), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]


def test_crds_enabled_false_renders_no_agentry_crd() -> None:
    objs = render(crds__enabled="false")
    assert find(objs, "CustomResourceDefinition") == []
    assert find(objs, "Deployment", "agentry-operator")


def test_the_chart_ships_no_crd_but_its_own() -> None:
    """One replica mode (Lease election): no kopf peering CRDs, objects or rules, even with --include-crds."""
    objs = render(include_crds=True)
    crds = find(objs, "CustomResourceDefinition")
    assert crds and all(c["metadata"]["name"].endswith(".agentry.dev") for c in crds)
    assert not [o for o in objs if "Kopf" in o["kind"]]
    rules = [r for role in find(objs, "ClusterRole") for r in role["rules"]]
    assert not [r for r in rules if "kopf.dev" in r["apiGroups"]]


def test_workload_namespace_is_restricted_and_kept(default: list[Obj]) -> None:
    ns = one(default, "Namespace", WORKLOADS)
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"
    assert ns["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_workload_namespace_options() -> None:
    objs = render(
        workloads__namespace="agents",
        workloads__keepNamespace="false",
        workloads__podSecurity__version="v1.34",
        workloads__namespaceLabels__team="ml",
    )
    ns = one(objs, "Namespace", "agents")
    assert ns["metadata"]["labels"]["team"] == "ml"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce-version"] == "v1.34"
    assert "annotations" not in ns["metadata"]
    assert env_of(api_container(objs))["AGENTRY_NAMESPACE"] == "agents"
    assert one(objs, "RoleBinding", "agentry-operator")["metadata"]["namespace"] == "agents"
    assert find(render(workloads__createNamespace="false"), "Namespace") == []


def test_release_namespace_object_only_on_request() -> None:
    objs = render(releaseNamespace__create="true")
    assert {n["metadata"]["name"] for n in find(objs, "Namespace")} == {NAMESPACE, WORKLOADS}


def test_namespaced_operator_rbac_is_bound_in_the_workload_namespace_only(default: list[Obj]) -> None:
    binding = one(default, "RoleBinding", "agentry-operator")
    assert binding["metadata"]["namespace"] == WORKLOADS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "agentry-operator",
    }
    cluster_bindings = find(default, "ClusterRoleBinding")
    assert [b["metadata"]["name"] for b in cluster_bindings] == ["agentry-operator-cluster"]
    cluster_rules = one(default, "ClusterRole", "agentry-operator-cluster")["rules"]
    assert cluster_rules == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["list", "watch"],
        },
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    ]


def test_cluster_wide_operator() -> None:
    objs = render([ci("clusterwide")])
    assert "--all-namespaces" in operator_container(objs)["args"]
    assert find(objs, "RoleBinding", "agentry-operator") == []
    assert one(objs, "ClusterRoleBinding", "agentry-operator")["roleRef"]["name"] == "agentry-operator"
    cluster_rules = one(objs, "ClusterRole", "agentry-operator-cluster")["rules"]
    assert not [r for r in cluster_rules if "namespaces" in r["resources"]], (
        "kopf lists none when cluster-wide"
    )
    webhook = one(objs, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert "namespaceSelector" not in webhook
    assert webhook["failurePolicy"] == "Fail"


def test_leader_election_by_default_and_one_replica_without_it(default: list[Obj]) -> None:
    env = env_of(operator_container(default))
    assert env["AGENTRY_LEADER_ELECTION"] == "true"
    assert (env["AGENTRY_LEASE_NAME"], env["AGENTRY_LEASE_NAMESPACE"]) == ("agentry-operator", NAMESPACE)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    role = one(default, "Role", "agentry-operator-leader")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"create", "get", "update"}
    assert all(rule["resources"] == ["leases"] for rule in role["rules"])
    single = render(operator__leaderElection__enabled="false", operator__replicas="3")
    deployment = one(single, "Deployment", "agentry-operator")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    env = env_of(operator_container(single))
    assert "AGENTRY_LEADER_ELECTION" not in env and "POD_NAME" not in env
    assert not [o for o in single if o["metadata"]["name"] == "agentry-operator-leader"]


def test_webhook_on_ships_its_own_configuration_and_a_certificate_it_trusts(default: list[Obj]) -> None:
    config = one(default, "ValidatingWebhookConfiguration", "agentry-webhook")
    hook, owner, priority, workflow, workflowrun, trigger = config["webhooks"]
    for entry, kind in ((workflow, "workflow"), (workflowrun, "workflowrun"), (trigger, "trigger")):
        assert entry["name"] == f"validate-{kind}.agentry.dev" and entry["failurePolicy"] == "Fail"
        assert entry["rules"][0]["resources"] == [f"{kind}s"]
        assert entry["clientConfig"]["service"]["path"] == f"/validate-{kind}"
    assert hook["name"] == "validate-agent.agentry.dev"
    assert owner["name"] == "validate-execution-owner.agentry.dev" and owner["failurePolicy"] == "Fail"
    assert owner["rules"][0]["resources"] == ["executions"]
    assert owner["objectSelector"] == {
        "matchExpressions": [{"key": "agentry.dev/owner", "operator": "Exists"}]
    }
    assert owner["clientConfig"]["service"]["path"] == "/validate-execution-owner"
    assert (
        priority["failurePolicy"] == "Ignore"
        and priority["clientConfig"]["service"]["path"] == "/validate-execution"
    )
    assert hook["clientConfig"]["service"] == {
        "name": "agentry-webhook",
        "namespace": NAMESPACE,
        "path": "/validate-agent",
        "port": 443,
    }
    assert hook["rules"][0]["resources"] == ["agents"] and hook["failurePolicy"] == "Fail"
    assert hook["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": WORKLOADS}}
    service = one(default, "Service", "agentry-webhook")
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"

    secret = one(default, "Secret", "agentry-webhook-tls")
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"agentry-webhook.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)

    env = env_of(operator_container(default))
    assert env["AGENTRY_WEBHOOK_ENABLED"] == "true"
    assert env["AGENTRY_WEBHOOK_MANAGED"] == "false"
    assert env["AGENTRY_WEBHOOK_PORT"] == "9443"
    assert env["AGENTRY_WEBHOOK_CERTFILE"] == "/etc/agentry/webhook/tls.crt"
    volumes = one(default, "Deployment", "agentry-operator")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "webhook-tls", "secret": {"secretName": "agentry-webhook-tls"}} in volumes


def test_webhook_off_leaves_nothing_behind() -> None:
    objs = render(operator__webhook__enabled="false")
    assert find(objs, "ValidatingWebhookConfiguration") == []
    assert find(objs, "Secret", "agentry-webhook-tls") == []
    assert find(objs, "Service", "agentry-webhook") == []
    container = operator_container(objs)
    assert env_of(container)["AGENTRY_WEBHOOK_ENABLED"] == "false"
    assert "webhook" not in {p["name"] for p in container["ports"]}


def test_webhook_with_cert_manager() -> None:
    objs = render([ci("clusterwide")])
    assert find(objs, "Secret", "agentry-webhook-tls") == []
    config = one(objs, "ValidatingWebhookConfiguration")
    inject = {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/agentry-webhook"}
    assert config["metadata"]["annotations"] == inject
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    certificate = one(objs, "Certificate", "agentry-webhook")
    assert certificate["spec"]["secretName"] == "agentry-webhook-tls"
    issuer = {"name": "agentry-webhook", "kind": "Issuer", "group": "cert-manager.io"}
    assert certificate["spec"]["issuerRef"] == issuer
    assert one(objs, "Issuer", "agentry-webhook")["spec"] == {"selfSigned": {}}
    external = render([ci("clusterwide")], **{"operator.webhook.certManager.issuerRef.name": "corp-ca"})
    assert find(external, "Issuer") == []
    assert one(external, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca"}


def test_api_ingress_hpa_and_service() -> None:
    objs = render([ci("gke")])
    deployment = one(objs, "Deployment", "agentry-api")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = one(objs, "HorizontalPodAutoscaler", "agentry-api")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "agentry-api"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu", "memory"]
    ingress = one(objs, "Ingress", "agentry-api")
    assert ingress["spec"]["ingressClassName"] == "gce"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "agentry.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "agentry-api", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"hosts": ["agentry.example.com"], "secretName": "agentry-tls"}]


def test_api_without_ingress_nor_hpa(default: list[Obj]) -> None:
    assert find(default, "Ingress") == [] and find(default, "HorizontalPodAutoscaler") == []
    assert one(default, "Deployment", "agentry-api")["spec"]["replicas"] == 1
    service = one(default, "Service", "agentry-api")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    container = api_container(default)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_api_disabled() -> None:
    objs = render(api__enabled="false")
    assert not [o for o in objs if o["metadata"]["name"].startswith("agentry-api")]


def test_api_rbac_is_namespaced_and_minimal(default: list[Obj]) -> None:
    role = one(default, "Role", "agentry-api")
    assert role["metadata"]["namespace"] == WORKLOADS
    verbs = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert verbs == {
        ("agentry.dev", "agents"): {"get", "list", "watch", "create", "patch", "delete"},
        ("agentry.dev", "executions"): {"get", "list", "watch", "create", "patch"},
        # Dashboard users' workflows: written whole (PUT with the resourceVersion read), runs started.
        ("agentry.dev", "workflows"): {"get", "list", "create", "update", "delete"},
        ("agentry.dev", "workflowruns"): {"get", "list", "watch", "create", "delete"},
        ("", "pods"): {"get", "list"},
        ("", "pods/log"): {"get"},
        # Triggers written for their owners, and their status (the receiver's readiness, last delivery).
        ("agentry.dev", "triggers"): {"get", "list", "create", "patch", "delete"},
        ("agentry.dev", "triggers/status"): {"patch"},
        # The agent policy's opt-in label of referenced Secrets; a trigger's key: read, made, rotated.
        ("", "secrets"): {"get", "create", "patch"},
    }


def test_workload_identity_on() -> None:
    objs = render([ci("gke")])
    annotations = {
        sa["metadata"]["name"]: sa["metadata"].get("annotations", {}) for sa in find(objs, "ServiceAccount")
    }
    gsa = "iam.gke.io/gcp-service-account"
    for who in ("workload", "api", "operator"):
        assert (
            annotations[f"agentry-{who}"][gsa] == f"agentry-{who}@my-agentry-project.iam.gserviceaccount.com"
        )
    assert gsa not in annotations["agentry-tick"]
    egress = one(objs, "NetworkPolicy", "agentry-runs")["spec"]["egress"]
    blocks = [p["ipBlock"]["cidr"] for rule in egress for p in rule.get("to", []) if "ipBlock" in p]
    assert {"169.254.169.254/32", "169.254.169.252/32"} <= set(blocks)
    assert env_of(api_container(objs))["GOOGLE_CLOUD_PROJECT"] == "my-agentry-project"
    assert "FIRESTORE_EMULATOR_HOST" not in env_of(api_container(objs))


def test_workload_identity_off_ignores_gsa_and_keeps_metadata_closed() -> None:
    objs = render(
        workloads__serviceAccount__gcpServiceAccount="w@p-123456.iam.gserviceaccount.com",
        workloads__networkPolicy__egress="internet",
    )
    for sa in find(objs, "ServiceAccount"):
        assert "iam.gke.io/gcp-service-account" not in sa["metadata"].get("annotations", {})
    egress = one(objs, "NetworkPolicy", "agentry-runs")["spec"]["egress"]
    internet = [p["ipBlock"] for rule in egress for p in rule.get("to", []) if "ipBlock" in p]
    assert internet == [
        {
            "cidr": "0.0.0.0/0",
            "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"],
        }
    ]


def test_workload_service_account_mounts_no_token(default: list[Obj]) -> None:
    sa = one(default, "ServiceAccount", "agentry-workload")
    assert sa["metadata"]["namespace"] == WORKLOADS
    assert sa["automountServiceAccountToken"] is False
    bound = {s["name"] for b in find(default, "RoleBinding") for s in b["subjects"]}
    assert "agentry-workload" not in bound
    assert env_of(operator_container(default))["AGENTRY_WORKLOAD_SERVICE_ACCOUNT"] == "agentry-workload"


def test_network_policy_selects_runs_only_and_opens_dns(default: list[Obj]) -> None:
    policy = one(default, "NetworkPolicy", "agentry-runs")
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == WORKLOADS
    assert spec["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "agentry-operator"},
        "matchExpressions": [{"key": "agentry.dev/execution", "operator": "Exists"}],
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    dns = spec["egress"][0]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    # By default runs get out only through the egress proxy (and reach the gateway): no address range.
    assert spec["egress"][1]["ports"] == [{"protocol": "TCP", "port": 3128}]
    assert not [p for rule in spec["egress"] for p in rule["to"] if "ipBlock" in p]
    internet = one(render(workloads__networkPolicy__egress="internet"), "NetworkPolicy", "agentry-runs")
    assert internet["spec"]["egress"][1]["ports"] == [{"protocol": "TCP", "port": 443}]


def test_network_policy_labels_match_the_operators_jobs(default: list[Obj]) -> None:
    from agentry_operator.builders.job import build_job

    execution = {
        "metadata": {"name": "e", "namespace": WORKLOADS, "uid": "u"},
        "spec": {"agentRef": {"name": "a"}},
    }
    agent = {"metadata": {"name": "a"}, "spec": {"instructions": "x", "model": {"name": "m"}}}
    job = build_job(execution, agent, "c", Settings())
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    selector = one(default, "NetworkPolicy", "agentry-runs")["spec"]["podSelector"]
    assert selector["matchLabels"].items() <= pod_labels.items()
    assert all(e["key"] in pod_labels for e in selector["matchExpressions"])


def test_network_policy_cidrs_mode() -> None:
    objs = render([ci("gke")])
    egress = one(objs, "NetworkPolicy", "agentry-runs")["spec"]["egress"]
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "203.0.113.10/32"}}]
    assert egress[1]["ports"] == [{"protocol": "TCP", "port": 443}]
    gateway = egress[-1]["to"][0]["namespaceSelector"]["matchLabels"]
    assert gateway == {"kubernetes.io/metadata.name": "llm-gateway"}
    with pytest.raises(RenderError, match=r"needs workloads\.networkPolicy\.cidrs"):
        render(workloads__networkPolicy__egress="cidrs", gateway__enabled="false")
    # With the gateway (the default), the runs' one destination may be the gateway alone.
    runs = one(render(workloads__networkPolicy__egress="cidrs"), "NetworkPolicy", "agentry-runs")
    assert [r["to"][0] for r in runs["spec"]["egress"][1:]] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "agentry",
                    "app.kubernetes.io/instance": "agentry",
                    "app.kubernetes.io/component": "gateway",
                }
            },
        }
    ]


def test_network_policy_off() -> None:
    assert find(render(workloads__networkPolicy__enabled="false"), "NetworkPolicy", "agentry-runs") == []


def test_firestore_emulator_dev_mode() -> None:
    objs = render([ci("kind")])
    deployment = one(objs, "Deployment", "agentry-firestore-emulator")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "gcr.io/google.com/cloudsdktool/google-cloud-cli:emulators"
    assert container["command"][:4] == ["gcloud", "emulators", "firestore", "start"]
    assert "--host-port=0.0.0.0:8080" in container["command"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "firestore"}
    assert one(objs, "Service", "agentry-firestore-emulator")["spec"]["ports"][0]["port"] == 8080
    env = env_of(api_container(objs))
    assert env["FIRESTORE_EMULATOR_HOST"] == f"agentry-firestore-emulator.{NAMESPACE}.svc:8080"
    assert env["GOOGLE_CLOUD_PROJECT"] == "agentry-dev"
    assert api_container(objs)["imagePullPolicy"] == "Never"


def test_firestore_emulator_off_by_default(default: list[Obj]) -> None:
    assert find(default, "Deployment", "agentry-firestore-emulator") == []
    assert "FIRESTORE_EMULATOR_HOST" not in env_of(api_container(default))


def test_images_default_to_app_version_and_accept_digests(default: list[Obj]) -> None:
    assert operator_container(default)["image"] == "agentry/operator:0.1.0"
    env = env_of(operator_container(default))
    assert env["AGENTRY_WORKSPACE_IMAGE"] == "agentry/workspace:0.1.0"
    assert env["AGENTRY_TICK_IMAGE"] == operator_container(default)["image"]
    digest = "sha256:" + "a" * 64
    objs = render(operator__image__digest=digest, operator__workspaceImage__tag="v2")
    assert operator_container(objs)["image"] == f"agentry/operator@{digest}"
    assert env_of(operator_container(objs))["AGENTRY_WORKSPACE_IMAGE"] == "agentry/workspace:v2"


def test_fullname_follows_the_release_name() -> None:
    result = run_helm(
        "template", "prod", str(CHART), f"--namespace={NAMESPACE}", f"--kube-version={KUBE_VERSION}"
    )
    objs = load_all(result.stdout)
    container = one(objs, "Deployment", "prod-agentry-operator")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(container)["AGENTRY_TICK_SERVICE_ACCOUNT"] == "prod-agentry-tick"
    assert one(objs, "ServiceAccount", "prod-agentry-tick")


# --- values.yaml and values.schema.json --------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        ({"operator.bogus": "1"}, "additional properties 'bogus' not allowed"),
        ({"workloads.networkPolicy.egress": "everything"}, "egress"),
        ({"runAsUser": "0"}, "runAsUser"),
        ({"operator.webhook.failurePolicy": "Maybe"}, "failurePolicy"),
        ({"workloads.podSecurity.enforce": "strict"}, "enforce"),
        ({"api.serviceAccount.gcpServiceAccount": "not-an-email"}, "gcpServiceAccount"),
    ],
)
def test_schema_refuses_bad_values(sets: dict[str, str], error: str) -> None:
    with pytest.raises(RenderError, match=re.escape(error)):
        render(**{k.replace(".", "__"): v for k, v in sets.items()})


def _walk_schema(schema: dict[str, Any], path: str = "$") -> list[str]:
    problems = []
    if schema.get("type") == "object":
        if "additionalProperties" not in schema:
            problems.append(f"{path}: object without additionalProperties")
        if "properties" in schema and schema.get("additionalProperties") is not False:
            problems.append(f"{path}: object with properties must set additionalProperties: false")
    for key, sub in schema.get("properties", {}).items():
        problems += _walk_schema(sub, f"{path}.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += _walk_schema(schema[key], f"{path}.{key}")
    return problems


def test_schema_is_closed_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _walk_schema(schema) == []


def _schema_keys(schema: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, sub in schema.get("properties", {}).items():
        keys.add(prefix + key)
        keys |= _schema_keys(sub, f"{prefix}{key}.")
    return keys


def _values_keys(values: Any, prefix: str = "") -> set[str]:
    keys = set()
    if isinstance(values, dict):
        for key, sub in values.items():
            keys.add(prefix + key)
            keys |= _values_keys(sub, f"{prefix}{key}.")
    return keys


def test_schema_covers_every_default_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    free_maps = (
        "Labels.",
        "Annotations.",
        "annotations.",
        "nodeSelector.",
        "requests.",
        "limits.",
        "maxResources.",
        "hard.",
    )
    value_keys = {k for k in _values_keys(values) if not any(m in k for m in free_maps)}
    assert value_keys - _schema_keys(schema) == set()


def test_every_value_is_documented() -> None:
    """helm-docs convention: each key, parents too, follows a comment block with a `# --` line."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    list_indent: int | None = None
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if stripped.startswith("- "):
            list_indent = indent if list_indent is None else min(list_indent, indent)
            continue
        if list_indent is not None and indent >= list_indent and stripped and not stripped.startswith("#"):
            continue  # inside a list value (an example), not a key of ours
        list_indent = None
        if not re.match(r"[A-Za-z0-9_]+:", stripped):
            continue
        j = i - 1
        documented = False
        while j >= 0 and lines[j].strip().startswith("#"):
            documented = documented or lines[j].strip().startswith("# --")
            j -= 1
        if not documented:
            undocumented.append(f"values.yaml:{i + 1}: {stripped}")
    assert undocumented == []


def test_api_session_secret_and_designer_key(default: list[Obj]) -> None:
    secret = one(default, "Secret", "agentry-api-session")
    assert len(base64.b64decode(secret["data"]["session-secret"])) == 48
    env = env_of(api_container(default))
    assert env["AGENTRY_SESSION_SECRET"] == {
        "secretKeyRef": {"name": "agentry-api-session", "key": "session-secret"}
    }
    assert env["AGENTRY_NAMESPACE"] == WORKLOADS and env["AGENTRY_FIRESTORE_DATABASE"] == "(default)"
    assert "ANTHROPIC_API_KEY" not in env

    # The designer's own key is used without the gateway only (with it, the designer calls the
    # gateway with user tokens: tests/unit/chart/test_gateway.py).
    objs = render(
        api__sessionSecret__existingSecret="mine",
        api__anthropicKeySecret__name="designer-key",
        gateway__enabled="false",
        workloads__networkPolicy__egress="internet",
    )
    assert find(objs, "Secret", "agentry-api-session") == []
    env = env_of(api_container(objs))
    assert env["AGENTRY_SESSION_SECRET"] == {"secretKeyRef": {"name": "mine", "key": "session-secret"}}
    assert env["ANTHROPIC_API_KEY"] == {"secretKeyRef": {"name": "designer-key", "key": "anthropic"}}
    assert "AGENTRY_GATEWAY_URL" not in env
    gateway_on = env_of(api_container(render(api__anthropicKeySecret__name="designer-key")))
    assert "ANTHROPIC_API_KEY" not in gateway_on and "AGENTRY_GATEWAY_URL" in gateway_on

    objs = render(api__sessionSecret__generate="false")
    assert find(objs, "Secret", "agentry-api-session") == []
    assert "AGENTRY_SESSION_SECRET" not in env_of(api_container(objs))


def test_cloud_scheduler_settings_reach_operator_and_api_together() -> None:
    objs = render([ci("gke")])
    op, api = env_of(operator_container(objs)), env_of(api_container(objs))
    audience = op.get("AGENTRY_CLOUD_SCHEDULER_AUDIENCE") or op["AGENTRY_CLOUD_SCHEDULER_TARGET_URL"]
    assert api["AGENTRY_SCHEDULER_OIDC_AUDIENCE"] == audience
    assert json.loads(api["AGENTRY_SCHEDULER_SERVICE_ACCOUNTS"]) == [
        op["AGENTRY_CLOUD_SCHEDULER_SERVICE_ACCOUNT"]
    ]
    assert "AGENTRY_SCHEDULER_OIDC_AUDIENCE" not in env_of(api_container(render()))
