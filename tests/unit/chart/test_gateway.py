"""The LLM gateway in the chart (gateway.*): on by default, its own restricted Deployment holding the
provider keys alone, a token-key Secret shared with the operator, and the operator wired to it."""

from __future__ import annotations

import base64
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentry_common.tokens import Keyring, mint_run_token, verify
from agentry_gateway.config import GatewayConfig
from agentry_operator.settings import Settings as OperatorSettings

from .render import (
    CHART,
    NAMESPACE,
    Obj,
    RenderError,
    env_of,
    find,
    load_all,
    one,
    pod_specs,
    render,
    run_helm,
)

pytestmark = pytest.mark.unit

WORKLOADS = "agentry-workloads"
GATEWAY = "agentry-gateway"
URL = f"http://{GATEWAY}.{NAMESPACE}.svc:8090"
KEYS_DIR = "/var/run/agentry/token-keys"
ON = {"gateway__enabled": "true", "gateway__providerKeys__existingSecret": "llm-keys"}


def ci(name: str) -> Path:
    return CHART / "ci" / f"{name}-values.yaml"


@pytest.fixture(scope="module")
def off() -> list[Obj]:
    # Without the gateway runs call providers directly: the `proxy` egress mode (the default) cannot hold.
    return render(gateway__enabled="false", workloads__networkPolicy__egress="internet")


@pytest.fixture(scope="module")
def on() -> list[Obj]:
    return render(**ON)


@pytest.fixture(scope="module")
def full() -> list[Obj]:
    """ci/gateway-values.yaml: a governance file, the emulator, an HPA, extra network rules."""
    return render([ci("gateway")])


def pod_of(objs: list[Obj], name: str) -> Obj:
    return one(objs, "Deployment", name)["spec"]["template"]["spec"]


def container_of(objs: list[Obj], name: str) -> Obj:
    containers: list[Obj] = pod_of(objs, name)["containers"]
    return containers[0]


def secrets_referenced(spec: Obj) -> set[str]:
    """Every Secret a pod spec can read: volumes (plain and projected), env and envFrom."""
    names = set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    for container in spec.get("initContainers", []) + spec["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for env_from in container.get("envFrom", []):
            if "secretRef" in env_from:
                names.add(env_from["secretRef"]["name"])
    return names


def mounts(container: Obj, spec: Obj) -> dict[str, tuple[str, bool]]:
    """mountPath -> (Secret or ConfigMap name, readOnly)."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    out = {}
    for m in container.get("volumeMounts", []):
        volume = volumes[m["name"]]
        source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name") or ""
        out[m["mountPath"]] = (source, m.get("readOnly", False))
    return out


# --- off ---------------------------------------------------------------------------------------


def test_off_renders_nothing_of_the_gateway(off: list[Obj]) -> None:
    assert not [o for o in off if "gateway" in o["metadata"]["name"] or "token-keys" in o["metadata"]["name"]]
    operator = container_of(off, "agentry-operator")
    env = env_of(operator)
    assert not {
        "AGENTRY_GATEWAY_URL",
        "AGENTRY_TOKEN_KEYS_DIR",
        "AGENTRY_ANTHROPIC_BASE_URL",
        "AGENTRY_OPENAI_BASE_URL",
    } & set(env)
    assert KEYS_DIR not in mounts(operator, pod_of(off, "agentry-operator"))
    api = container_of(off, "agentry-api")
    assert not {"AGENTRY_GATEWAY_URL", "AGENTRY_TOKEN_KEYS_DIR"} & set(env_of(api))
    assert KEYS_DIR not in mounts(api, pod_of(off, "agentry-api"))
    runs = one(off, "NetworkPolicy", "agentry-runs")["spec"]["egress"]
    assert "gateway" not in yaml.safe_dump(runs)


# --- the Deployment -----------------------------------------------------------------------------


def test_deployment_is_restricted_and_drains_streams(on: list[Obj]) -> None:
    deployment = one(on, "Deployment", GATEWAY)
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    spec = deployment["spec"]["template"]["spec"]
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    # uvicorn finishes in-flight streams for 60 s after SIGTERM, which comes after the preStop pause.
    container = spec["containers"][0]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert spec["terminationGracePeriodSeconds"] >= 60 + 5 == 65
    assert spec["terminationGracePeriodSeconds"] == 75
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["command"] == ["python", "-m", "agentry_gateway"]
    assert container["image"] == "agentry/gateway:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 8090, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) & set(
        container["resources"]["limits"]
    )
    assert mounts(container, spec)["/tmp"] == ("", False)  # the only writable path


def test_gateway_settings_match_the_gateway(on: list[Obj], full: list[Obj]) -> None:
    env = env_of(container_of(on, GATEWAY))
    assert env["AGENTRY_GATEWAY_PORT"] == "8090"
    assert env["AGENTRY_GATEWAY_CONFIG_FILE"] == "/etc/agentry/gateway/governance.yaml"
    assert env["AGENTRY_TOKEN_KEYS_DIR"] == KEYS_DIR
    assert env["AGENTRY_GATEWAY_LEDGER"] == "firestore"
    assert env["AGENTRY_GATEWAY_FIRESTORE_DATABASE"] == "(default)"
    assert "FIRESTORE_EMULATOR_HOST" not in env
    # Every AGENTRY_GATEWAY_* the chart sets is a field of the gateway's Settings.
    from agentry_gateway.settings import Settings

    fields = {f"AGENTRY_GATEWAY_{f.upper()}" for f in Settings.model_fields}
    assert {k for k in env if k.startswith("AGENTRY_GATEWAY_")} <= fields
    env = env_of(container_of(full, GATEWAY))
    assert env["FIRESTORE_EMULATOR_HOST"] == f"agentry-firestore-emulator.{NAMESPACE}.svc:8080"
    assert env["GOOGLE_CLOUD_PROJECT"] == "agentry-dev"


def test_dev_image_and_pull_policy() -> None:
    objs = render(**ON, gateway__image__tag="dev", gateway__image__pullPolicy="Never")
    container = container_of(objs, GATEWAY)
    assert (container["image"], container["imagePullPolicy"]) == ("agentry/gateway:dev", "Never")


def test_service_account_has_no_token_and_no_rbac(on: list[Obj]) -> None:
    sa = one(on, "ServiceAccount", GATEWAY)
    assert sa["automountServiceAccountToken"] is False
    assert pod_of(on, GATEWAY)["serviceAccountName"] == GATEWAY
    bound = {
        s["name"] for b in find(on, "RoleBinding") + find(on, "ClusterRoleBinding") for s in b["subjects"]
    }
    assert GATEWAY not in bound


def test_service_pdb_and_url(on: list[Obj]) -> None:
    service = one(on, "Service", GATEWAY)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8090, "targetPort": "http", "protocol": "TCP"}
    ]
    labels = one(on, "Deployment", GATEWAY)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    pdb = one(on, "PodDisruptionBudget", GATEWAY)
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # No other component's pods are selected by the gateway's Service or PDB.
    for owner, _ in pod_specs(on):
        if owner["metadata"]["name"] != GATEWAY:
            other = owner["spec"]["template"]["metadata"]["labels"]
            assert not service["spec"]["selector"].items() <= other.items(), owner["metadata"]["name"]
    assert find(on, "HorizontalPodAutoscaler") == []
    assert find(render(**ON, gateway__podDisruptionBudget__enabled="false"), "PodDisruptionBudget") == []


def test_hpa_replaces_replicas(full: list[Obj]) -> None:
    assert "replicas" not in one(full, "Deployment", GATEWAY)["spec"]
    hpa = one(full, "HorizontalPodAutoscaler", GATEWAY)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    metrics = hpa["spec"]["metrics"]
    assert metrics[0]["resource"]["name"] == "cpu"
    assert metrics[1]["pods"]["metric"]["name"] == "agentry_gateway_in_flight"


def test_memory_ledger_needs_one_replica() -> None:
    with pytest.raises(RenderError, match=r"gateway\.ledger=memory keeps budgets in one process"):
        render(**ON, gateway__ledger="memory")
    env = env_of(container_of(render(**ON, gateway__ledger="memory", gateway__replicas="1"), GATEWAY))
    assert env["AGENTRY_GATEWAY_LEDGER"] == "memory" and "AGENTRY_GATEWAY_FIRESTORE_DATABASE" not in env


# --- provider keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["gateway", "gke+gateway", "clusterwide+gateway"])
def test_provider_keys_reach_the_gateway_pod_only(values: str) -> None:
    files = [ci(v) for v in values.split("+")]
    objs = render(files, **ON)
    readers = {
        owner["metadata"]["name"] for owner, spec in pod_specs(objs) if "llm-keys" in secrets_referenced(spec)
    }
    assert readers == {GATEWAY}
    container = container_of(objs, GATEWAY)
    assert mounts(container, pod_of(objs, GATEWAY))["/var/run/agentry/llm-keys"] == ("llm-keys", True)
    # Nor as an environment variable of the gateway itself: files only (ChannelConfig.apiKeyFile).
    assert not [name for name in env_of(container) if name.endswith("_API_KEY")]
    # The operator, whose env becomes every run pod's, carries no key either.
    assert not [k for k in env_of(container_of(objs, "agentry-operator")) if k.endswith("_API_KEY")]


def test_the_gateways_key_secret_is_refused_for_the_api() -> None:
    with pytest.raises(RenderError, match=r"provider keys are mounted into the gateway only"):
        render(**ON, api__anthropicKeySecret__name="llm-keys")


def test_default_channels_read_the_mounted_keys(on: list[Obj]) -> None:
    config = yaml.safe_load(one(on, "ConfigMap", GATEWAY)["data"]["governance.yaml"])
    parsed = GatewayConfig.model_validate(config)
    assert [(c.name, c.protocol.value, c.api_key_file) for c in parsed.channels] == [
        ("anthropic", "anthropic", "/var/run/agentry/llm-keys/anthropic"),
        ("openai", "openai", "/var/run/agentry/llm-keys/openai"),
    ]
    only_anthropic = render(
        **ON, gateway__providerKeys__openaiKey="", gateway__providerKeys__anthropicKey="claude"
    )
    config = yaml.safe_load(one(only_anthropic, "ConfigMap", GATEWAY)["data"]["governance.yaml"])
    assert [c["apiKeyFile"] for c in config["channels"]] == ["/var/run/agentry/llm-keys/claude"]


def test_no_keys_and_no_channels_is_refused() -> None:
    with pytest.raises(RenderError, match=r"gateway\.enabled needs provider keys"):
        render(gateway__providerKeys__existingSecret="")
    # Keyless channels (a local model server) are enough; then no key Secret is mounted anywhere.
    objs = render(
        gateway__providerKeys__existingSecret="",
        **{
            "gateway.config.channels[0].name": "local",
            "gateway.config.channels[0].protocol": "openai",
            "gateway.config.channels[0].baseURL": "http://vllm.models.svc:8000/v1",
        },
    )
    assert "/var/run/agentry/llm-keys" not in mounts(container_of(objs, GATEWAY), pod_of(objs, GATEWAY))


# --- the API's chat designer -----------------------------------------------------------------------


def test_the_designer_calls_the_gateway_with_the_shared_token_keys(on: list[Obj], tmp_path: Path) -> None:
    """With the gateway, the API gets its URL and the token keys (read-only, the operator's Secret) to
    mint the designer's user tokens; no provider key; the gateway admits the API's pods."""
    api, spec = container_of(on, "agentry-api"), pod_of(on, "agentry-api")
    env = env_of(api)
    assert env["AGENTRY_GATEWAY_URL"] == URL
    assert env["AGENTRY_TOKEN_KEYS_DIR"] == KEYS_DIR
    assert mounts(api, spec)[KEYS_DIR] == ("agentry-token-keys", True)
    [volume] = [v for v in spec["volumes"] if v["name"] == "token-keys"]
    assert volume["secret"]["defaultMode"] == 0o440
    assert "llm-keys" not in secrets_referenced(spec)
    assert not [k for k in env if k.endswith("_API_KEY")]
    # Names the API's Settings read (AGENTRY_ + field name).
    from agentry_api.settings import Settings as ApiSettings

    assert {"gateway_url", "token_keys_dir"} <= set(ApiSettings.model_fields)
    # The gateway's NetworkPolicy lets the API's pods in (the API has no egress policy of its own).
    ingress = one(on, "NetworkPolicy", GATEWAY)["spec"]["ingress"][0]["from"]
    api_labels = one(on, "Deployment", "agentry-api")["spec"]["template"]["metadata"]["labels"]
    assert any(
        set(rule) == {"podSelector"} and rule["podSelector"]["matchLabels"].items() <= api_labels.items()
        for rule in ingress
    )
    assert find(on, "NetworkPolicy", "agentry-api") == []
    # A key the chart generates is a keyring the API mints with and the gateway verifies.
    (kid, value), *_ = one(on, "Secret", "agentry-token-keys")["data"].items()
    (tmp_path / kid).write_bytes(base64.b64decode(value))
    from agentry_api.designer_llm import GatewayLLM, llm_from_settings

    llm = llm_from_settings(ApiSettings(gateway_url=env["AGENTRY_GATEWAY_URL"], token_keys_dir=str(tmp_path)))
    assert isinstance(llm, GatewayLLM)
    assert verify(llm.token("owner"), Keyring.from_dir(tmp_path), expected="user").user == "owner"


# --- governance file -----------------------------------------------------------------------------


def test_governance_file_is_valid_for_the_gateway_and_rolls_the_pods(full: list[Obj]) -> None:
    text = one(full, "ConfigMap", GATEWAY)["data"]["governance.yaml"]
    config = GatewayConfig.model_validate(yaml.safe_load(text))
    assert [b.name for b in config.budgets] == ["users", "team-a-agents"]
    assert config.time_zone == "Asia/Seoul" and config.thresholds.throttle == 80
    assert [r.model for r in config.routes] == ["claude-*", "local-*"]
    assert "sk-" not in text and "llm-keys/" in text  # paths of keys, never keys
    container = container_of(full, GATEWAY)
    assert mounts(container, pod_of(full, GATEWAY))["/etc/agentry/gateway"] == (GATEWAY, True)

    def checksum(objs: list[Obj]) -> str:
        annotations = one(objs, "Deployment", GATEWAY)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    same = render([ci("gateway")])
    changed = render([ci("gateway")], gateway__config__timeZone="Europe/Berlin")
    assert checksum(full) == checksum(same) != checksum(changed)


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        ({"gateway.bogus": "1"}, "at '/gateway': additional properties 'bogus' not allowed"),
        (
            {"gateway.config.thresholds.bogus": "1"},
            "at '/gateway/config/thresholds': additional properties 'bogus'",
        ),
        (
            {"gateway.networkPolicy.egres": "cidrs"},
            "at '/gateway/networkPolicy': additional properties 'egres'",
        ),
        ({"gateway.ledger": "redis"}, "/gateway/ledger"),
        ({"gateway.config.budgets[0].name": "b", "gateway.config.budgets[0].scope": "team"}, "scope"),
        ({"gateway.providerKeys.existingSecret": "Not_A_Name"}, "existingSecret"),
    ],
)
def test_schema_refuses_bad_gateway_values(sets: dict[str, str], error: str) -> None:
    with pytest.raises(RenderError, match=re.escape(error)):
        render(**{k.replace(".", "__"): v for k, v in sets.items()})


# --- token keys ----------------------------------------------------------------------------------


def test_token_keys_are_generated_and_shared_by_operator_and_gateway(on: list[Obj], tmp_path: Path) -> None:
    secret = one(on, "Secret", "agentry-token-keys")
    assert secret["metadata"]["namespace"] == NAMESPACE
    (kid, value), *rest = secret["data"].items()
    assert rest == [] and re.fullmatch(r"20\d\d-(0[1-9]|1[0-2])", kid), kid  # key ids are dates
    key = base64.b64decode(value)
    assert len(key) >= 32
    for name in ("agentry-operator", GATEWAY):
        container, spec = container_of(on, name), pod_of(on, name)
        assert mounts(container, spec)[KEYS_DIR] == ("agentry-token-keys", True), name
        assert env_of(container)["AGENTRY_TOKEN_KEYS_DIR"] == KEYS_DIR, name
    # What the kubelet writes there is a keyring both sides load: the operator mints, the gateway verifies.
    (tmp_path / kid).write_bytes(key)
    keyring = Keyring.from_dir(tmp_path)
    token = mint_run_token(
        keyring, namespace=WORKLOADS, execution="e", execution_uid="u", agent="a", active_deadline_seconds=60
    )
    assert verify(token, Keyring.from_dir(tmp_path), expected="run").kid == kid
    # Random per render: stability across upgrades comes from lookup (next test, and the integration test).
    again = one(render(fresh=True, **ON), "Secret", "agentry-token-keys")
    assert again["data"] != secret["data"]


def test_token_keys_written_back_from_the_cluster(tmp_path: Path) -> None:
    """Helm's `lookup` returns nothing under `helm template`; substitute what it returns on an upgrade
    (a Secret with two keys, mid-rotation) to see that every key is written back as it is."""
    chart = tmp_path / "agentry"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "gateway" / "token-keys-secret.yaml"
    text = template.read_text()
    call = 'lookup "v1" "Secret" .Release.Namespace $name'
    assert call in text
    existing = '(dict "data" (dict "2025-05" "b2xk" "2025-11" "bmV3"))'
    template.write_text(text.replace(call, existing))
    result = run_helm(
        "template",
        "agentry",
        str(chart),
        f"--namespace={NAMESPACE}",
        "--kube-version=1.34.0",
        "--set=gateway.enabled=true",
        "--set=gateway.providerKeys.existingSecret=llm-keys",
        "--show-only=templates/gateway/token-keys-secret.yaml",
    )
    secret = yaml.safe_load(result.stdout)
    assert secret["data"] == {"2025-05": "b2xk", "2025-11": "bmV3"}


def test_existing_token_keys_secret() -> None:
    objs = render(**ON, gateway__tokenKeys__existingSecret="my-keys")
    assert find(objs, "Secret", "agentry-token-keys") == []
    for name in ("agentry-operator", GATEWAY):
        assert mounts(container_of(objs, name), pod_of(objs, name))[KEYS_DIR] == ("my-keys", True)


# --- the operator --------------------------------------------------------------------------------


def test_operator_is_wired_to_the_gateway(on: list[Obj]) -> None:
    env = env_of(container_of(on, "agentry-operator"))
    assert env["AGENTRY_GATEWAY_URL"] == URL
    assert env["AGENTRY_ANTHROPIC_BASE_URL"] == URL
    assert env["AGENTRY_OPENAI_BASE_URL"] == f"{URL}/v1"
    # The base URLs parse as the operator's settings (the other two are the operator's new settings).
    known = {k.removeprefix("AGENTRY_").lower(): v for k, v in env.items() if isinstance(v, str)}
    OperatorSettings(**{k: v for k, v in known.items() if k in OperatorSettings.model_fields})
    explicit = render(**ON, operator__llm__anthropicBaseUrl="https://gw.example.com")
    env = env_of(container_of(explicit, "agentry-operator"))
    assert env["AGENTRY_ANTHROPIC_BASE_URL"] == "https://gw.example.com"
    assert env["AGENTRY_OPENAI_BASE_URL"] == f"{URL}/v1"


def test_url_follows_release_name_and_port() -> None:
    result = run_helm(
        "template",
        "prod",
        str(CHART),
        "--namespace=llm",
        "--kube-version=1.34.0",
        "--set=gateway.enabled=true,gateway.providerKeys.existingSecret=k,gateway.port=9000",
    )
    objs = load_all(result.stdout)
    env = env_of(container_of(objs, "prod-agentry-operator"))
    assert env["AGENTRY_GATEWAY_URL"] == "http://prod-agentry-gateway.llm.svc:9000"
    assert one(objs, "Service", "prod-agentry-gateway")["spec"]["ports"][0]["port"] == 9000
    assert one(objs, "Secret", "prod-agentry-token-keys")


def test_operator_may_manage_run_token_secrets_in_the_workload_namespace_only(on: list[Obj]) -> None:
    rules = one(on, "ClusterRole", "agentry-operator")["rules"]
    secrets = [r for r in rules if "secrets" in r["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get"]}]
    binding = one(on, "RoleBinding", "agentry-operator")
    assert binding["metadata"]["namespace"] == WORKLOADS
    assert binding["roleRef"]["name"] == "agentry-operator"
    assert find(on, "ClusterRoleBinding", "agentry-operator") == []
    cluster_rules = one(on, "ClusterRole", "agentry-operator-cluster")["rules"]
    assert not [r for r in cluster_rules if "secrets" in r["resources"]]


# --- network policies ----------------------------------------------------------------------------


def _labels(objs: list[Obj], deployment: str) -> dict[str, Any]:
    labels: dict[str, Any] = one(objs, "Deployment", deployment)["spec"]["template"]["metadata"]["labels"]
    return labels


def _run_pod_labels() -> dict[str, str]:
    from agentry_operator.builders.job import build_job

    execution = {
        "metadata": {"name": "e", "namespace": WORKLOADS, "uid": "u"},
        "spec": {"agentRef": {"name": "a"}},
    }
    agent = {"metadata": {"name": "a"}, "spec": {"instructions": "x", "model": {"name": "m"}}}
    labels: dict[str, str] = build_job(execution, agent, "c", OperatorSettings())["spec"]["template"][
        "metadata"
    ]["labels"]
    return labels


def _selects(selector: Obj, labels: dict[str, Any]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "Exists", expr
        if expr["key"] not in labels:
            return False
    return True


def test_gateway_policy_admits_runs_operator_and_api_only(on: list[Obj]) -> None:
    policy = one(on, "NetworkPolicy", GATEWAY)
    spec = policy["spec"]
    assert policy["metadata"]["namespace"] == NAMESPACE
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert _selects(spec["podSelector"], _labels(on, GATEWAY))
    for other in ("agentry-operator", "agentry-api"):
        assert not _selects(spec["podSelector"], _labels(on, other))
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8090}]
    runs, operator, api = rule["from"]
    # Runs: Execution pods in the workload namespace, selected like the runs' own policy selects them.
    assert runs["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": WORKLOADS}}
    assert runs["podSelector"] == one(on, "NetworkPolicy", "agentry-runs")["spec"]["podSelector"]
    assert _selects(runs["podSelector"], _run_pod_labels())
    tick = {"app.kubernetes.io/managed-by": "agentry-operator", "agentry.dev/agent": "a"}
    assert not _selects(runs["podSelector"], tick)  # schedule tick pods have no business with the gateway
    # Operator and API: pod selectors without a namespace selector, i.e. in the gateway's namespace.
    assert set(operator) == {"podSelector"} and _selects(
        operator["podSelector"], _labels(on, "agentry-operator")
    )
    assert set(api) == {"podSelector"} and _selects(api["podSelector"], _labels(on, "agentry-api"))
    assert not _selects(api["podSelector"], _labels(on, "agentry-operator"))


def test_gateway_policy_egress(on: list[Obj], full: list[Obj]) -> None:
    egress = one(on, "NetworkPolicy", GATEWAY)["spec"]["egress"]
    dns, providers = egress
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert providers["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "10.0.0.0/8" in providers["to"][0]["ipBlock"]["except"]
    assert providers["ports"] == [{"protocol": "TCP", "port": 443}]
    # With the emulator: its pods on its port; extra rules appended; extra ingress (a scraper) too.
    egress = one(full, "NetworkPolicy", GATEWAY)["spec"]["egress"]
    emulator = egress[2]
    assert _selects(emulator["to"][0]["podSelector"], _labels(full, "agentry-firestore-emulator"))
    assert emulator["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert egress[-1]["to"] == [{"ipBlock": {"cidr": "192.168.1.20/32"}}]
    ingress = one(full, "NetworkPolicy", GATEWAY)["spec"]["ingress"]
    assert ingress[-1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    # cidrs mode: only the given ranges; without any, the chart refuses.
    objs = render(
        **ON, gateway__networkPolicy__egress="cidrs", **{"gateway.networkPolicy.cidrs[0]": "203.0.113.0/24"}
    )
    assert one(objs, "NetworkPolicy", GATEWAY)["spec"]["egress"][1]["to"] == [
        {"ipBlock": {"cidr": "203.0.113.0/24"}}
    ]
    with pytest.raises(RenderError, match=r"gateway\.networkPolicy\.egress=cidrs needs"):
        render(**ON, gateway__networkPolicy__egress="cidrs")


def test_gateway_policy_with_workload_identity_and_cluster_wide() -> None:
    objs = render([ci("gke")], **ON)
    blocks = [
        p["ipBlock"]["cidr"]
        for r in one(objs, "NetworkPolicy", GATEWAY)["spec"]["egress"]
        for p in r["to"]
        if "ipBlock" in p
    ]
    assert {"169.254.169.254/32", "169.254.169.252/32"} <= set(blocks)
    objs = render([ci("clusterwide")], **ON)
    runs = one(objs, "NetworkPolicy", GATEWAY)["spec"]["ingress"][0]["from"][0]
    assert runs["namespaceSelector"] == {}  # runs in any namespace the operator serves
    assert one(objs, "ClusterRoleBinding", "agentry-operator")["roleRef"]["name"] == "agentry-operator"


def test_runs_may_reach_the_gateway(on: list[Obj]) -> None:
    egress = one(on, "NetworkPolicy", "agentry-runs")["spec"]["egress"]
    (rule,) = [r for r in egress if {"protocol": "TCP", "port": 8090} in r.get("ports", [])]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8090}]
    peer = rule["to"][0]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
    assert _selects(peer["podSelector"], _labels(on, GATEWAY))
    # With the gateway, runs need no other LLM destination: cidrs mode without cidrs is fine.
    objs = render(**ON, workloads__networkPolicy__egress="cidrs")
    egress = one(objs, "NetworkPolicy", "agentry-runs")["spec"]["egress"]
    assert not [r for r in egress for p in r["to"] if "ipBlock" in p]
