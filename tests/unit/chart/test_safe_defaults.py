"""Issue 18, "Safe defaults": what `helm install agentry charts/agentry` with no values gives. The LLM
gateway on (provider keys only in the release namespace, for the gateway alone), no guest sessions,
Secure cookies, and the API answering only the Host names the chart derives from its values."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentry_api.settings import Settings as ApiSettings
from agentry_gateway.channels import ChannelKeyMissing
from agentry_gateway.config import GatewayConfig
from agentry_localcluster.kube import REPO
from agentry_operator.builders.job import build_job
from agentry_operator.settings import Settings

from .render import (
    CHART,
    CI_VALUES,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    Obj,
    RenderError,
    env_of,
    find,
    helm,
    load_all,
    one,
    pod_specs,
    render,
)

pytestmark = pytest.mark.unit

WORKLOADS = "agentry-workloads"
GATEWAY = "agentry-gateway"
SERVICE_HOSTS = [
    "agentry-api",
    f"agentry-api.{NAMESPACE}",
    f"agentry-api.{NAMESPACE}.svc",
    f"agentry-api.{NAMESPACE}.svc.cluster.local",
]
LOOPBACK = ["localhost", "127.0.0.1"]
# Environment variables that carry a provider key (what runs, the operator and the API must not get
# from a Secret the admin made for the gateway).
PROVIDER_KEY_ENV = re.compile(r"(ANTHROPIC|OPENAI)_API_KEY$")


@pytest.fixture(scope="module")
def default() -> list[Obj]:
    return render()


def container(objs: list[Obj], name: str) -> Obj:
    spec = one(objs, "Deployment", name)["spec"]["template"]["spec"]
    containers: list[Obj] = spec["containers"]
    return containers[0]


def api_env(objs: list[Obj]) -> dict[str, Any]:
    return env_of(container(objs, "agentry-api"))


def trusted_hosts(objs: list[Obj]) -> list[str]:
    hosts: list[str] = json.loads(api_env(objs)["AGENTRY_TRUSTED_HOSTS"])
    return hosts


def notes(tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it (helm template does not render it: wrap it in a template)."""
    chart = tmp_path / "agentry"
    shutil.copytree(CHART, chart)
    text = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "zz-notes.yaml").write_text(
        '{{- define "zz.notes" }}' + text + '{{- end }}\nnotes: {{ include "zz.notes" . | toJson }}\n'
    )
    result = subprocess.run(
        [
            str(helm()),
            "template",
            RELEASE,
            str(chart),
            f"--namespace={NAMESPACE}",
            f"--kube-version={KUBE_VERSION}",
            "--show-only=templates/zz-notes.yaml",
            *[f"--set={s}" for s in sets],
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out: str = yaml.safe_load(result.stdout)["notes"]
    return out


# --- a default install --------------------------------------------------------------------------


def test_a_default_install_renders_with_no_values_and_runs_the_gateway(default: list[Obj]) -> None:
    assert one(default, "Deployment", GATEWAY)["metadata"]["namespace"] == NAMESPACE
    assert one(default, "Secret", "agentry-token-keys")
    operator = env_of(container(default, "agentry-operator"))
    url = f"http://{GATEWAY}.{NAMESPACE}.svc:8090"
    assert operator["AGENTRY_GATEWAY_URL"] == url
    assert operator["AGENTRY_ANTHROPIC_BASE_URL"] == url
    assert operator["AGENTRY_OPENAI_BASE_URL"] == f"{url}/v1"


def test_provider_keys_default_to_an_optional_secret_in_the_release_namespace(default: list[Obj]) -> None:
    """The gateway starts before the admin created `llm-keys`; its channels read the mounted files."""
    spec = one(default, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "llm-keys"]
    assert volume["secret"] == {"secretName": "llm-keys", "defaultMode": 0o440, "optional": True}
    config = yaml.safe_load(one(default, "ConfigMap", GATEWAY)["data"]["governance.yaml"])
    assert [c["apiKeyFile"] for c in config["channels"]] == [
        "/var/run/agentry/llm-keys/anthropic",
        "/var/run/agentry/llm-keys/openai",
    ]
    # Until the Secret exists the files are missing, and the gateway says which key it misses.
    channel = GatewayConfig.model_validate(config).channels[0]
    assert channel.api_key() == ""
    assert str(ChannelKeyMissing(channel)) == (
        "channel 'anthropic' has no API key (looked in /var/run/agentry/llm-keys/anthropic)"
    )


def test_the_operator_builds_runs_without_provider_keys(default: list[Obj]) -> None:
    """With the chart's settings the operator governs runs: a sample Agent's Job reads the run-token
    Secret only, never a provider-key Secret."""
    env = env_of(container(default, "agentry-operator"))
    fields = set(Settings.model_fields)
    settings: dict[str, Any] = {
        k.removeprefix("AGENTRY_").lower(): v for k, v in env.items() if isinstance(v, str)
    }
    config = Settings(**{k: v for k, v in settings.items() if k in fields})
    assert config.governed
    agent = yaml.safe_load((REPO / "manifests" / "samples" / "agent-on-demand.yaml").read_text())
    agent["metadata"]["namespace"] = WORKLOADS
    execution = {
        "metadata": {"name": "hello-1", "namespace": WORKLOADS, "uid": "u-1"},
        "spec": {"agentRef": {"name": "hello"}},
    }
    job = build_job(execution, agent, "c", config, token_secret="hello-1-run-token")
    text = yaml.safe_dump(job)
    assert "llm-keys" not in text
    refs = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for c in job["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs <= {"hello-1-run-token"}


@pytest.mark.parametrize("values", ["default", *[p.name for p in CI_VALUES]])
def test_no_provider_key_secret_outside_the_gateway(values: str) -> None:
    """Objects of the workload namespace reference no Secret at all; in the release namespace only the
    gateway mounts the provider-key Secret, and no container gets a provider key as a variable."""
    objs = render([] if values == "default" else [CHART / "ci" / values])
    workloads = {o["metadata"].get("namespace") for o in objs} - {NAMESPACE, None}
    assert not [o for o in objs if o["metadata"].get("namespace") in workloads and o["kind"] == "Secret"]
    for owner, spec in pod_specs(objs):
        namespace = owner["metadata"]["namespace"]
        text = yaml.safe_dump(spec)
        assert namespace == NAMESPACE or "secret" not in text.lower(), owner["metadata"]["name"]
        for c in spec["containers"]:
            keys = [e["name"] for e in c.get("env", []) if PROVIDER_KEY_ENV.search(e["name"])]
            assert keys == [], (values, owner["metadata"]["name"])
        if owner["metadata"]["name"] != GATEWAY:
            assert "llm-keys" not in text, (values, owner["metadata"]["name"])


def test_samples_reference_no_provider_key() -> None:
    for path in sorted((REPO / "manifests" / "samples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert "secrets" not in (doc or {}).get("spec", {}), path.name
            assert "llm-keys" not in path.read_text(), path.name


def test_no_doc_puts_a_provider_key_into_the_workload_namespace() -> None:
    """The Secret of provider keys lives in the release namespace (docs, notes, chart comments)."""
    texts = {p: p.read_text() for p in sorted((REPO / "docs").glob("*.md"))}
    texts |= {p: p.read_text() for p in sorted(CHART.rglob("*")) if p.suffix in {".md", ".txt", ".yaml"}}
    bad = re.compile(
        r"-n\s+agentry-workloads\s+create\s+secret"
        r"|llm-keys[^\n]{0,60}(in|into|to)\s+`?agentry-workloads"
        r"|agentry-workloads/llm-keys"
    )
    found = [f"{p.relative_to(REPO)}: {m.group(0)}" for p, t in texts.items() for m in bad.finditer(t)]
    assert found == []


def test_notes_tell_the_admin_to_create_the_keys_in_the_release_namespace(tmp_path: Path) -> None:
    out = notes(tmp_path)
    assert f"kubectl -n {NAMESPACE} create secret generic llm-keys --from-literal=anthropic=" in out
    assert "has no API key" in out
    assert f"-n {WORKLOADS} create secret" not in out
    assert "Sign in with an API token" in out and "Guest sessions are ON" not in out
    assert "http://localhost:8000/" in out
    # The budget ledger needs a database: the notes say which value is missing.
    assert "gcp.projectId is empty" in out and "budget ledger" in out
    dev = notes(tmp_path / "dev", "api.guestSessions=true", "api.cookieSecure=false")
    assert "Guest sessions are ON" in dev and "api.cookieSecure=false" in dev


# --- the API's safe defaults ---------------------------------------------------------------------


def test_api_defaults_are_the_safe_ones(default: list[Obj], monkeypatch: pytest.MonkeyPatch) -> None:
    env = api_env(default)
    assert env["AGENTRY_GUEST_SESSIONS"] == "false"
    assert env["AGENTRY_COOKIE_SECURE"] == "true"
    assert trusted_hosts(default) == SERVICE_HOSTS + LOOPBACK
    # And the API reads them so.
    for name in ("AGENTRY_GUEST_SESSIONS", "AGENTRY_COOKIE_SECURE", "AGENTRY_TRUSTED_HOSTS"):
        monkeypatch.setenv(name, env[name])
    settings = ApiSettings()
    assert settings.guest_sessions is False and settings.cookie_secure is True
    assert settings.trusted_hosts == SERVICE_HOSTS + LOOPBACK


def test_dev_switches_are_explicit() -> None:
    env = api_env(render(api__guestSessions="true", api__cookieSecure="false"))
    assert env["AGENTRY_GUEST_SESSIONS"] == "true" and env["AGENTRY_COOKIE_SECURE"] == "false"


def test_trusted_hosts_follow_the_values() -> None:
    gke = render([CHART / "ci" / "gke-values.yaml"])
    assert trusted_hosts(gke) == SERVICE_HOSTS + LOOPBACK + ["agentry.example.com"]
    sets: dict[str, Any] = {
        "api.ingress.hosts[0].host": "agentry.corp.example",
        "api.ingress.hosts[0].paths[0].path": "/",
        "api.ingress.hosts[0].paths[0].pathType": "Prefix",
        "api.trustedHosts": "{*.agentry.corp.example,agentry.corp.example}",
        "operator.cloudScheduler.location": "europe-west1",
        "operator.cloudScheduler.targetUrl": "https://sched.example.com:8443/base",
        "operator.cloudScheduler.serviceAccount": "s@p-123456.iam.gserviceaccount.com",
    }
    objs = render(api__ingress__enabled="true", gcp__projectId="p-123456", **sets)
    assert trusted_hosts(objs) == [
        *SERVICE_HOSTS,
        *LOOPBACK,
        "agentry.corp.example",
        "sched.example.com",
        "*.agentry.corp.example",
    ]
    # Ingress hosts count only with the Ingress on.
    assert "agentry.example.com" not in trusted_hosts(render())


def test_probes_send_a_trusted_host(default: list[Obj]) -> None:
    """The kubelet would send the pod IP as Host, which the API refuses."""
    api = container(default, "agentry-api")
    for probe in ("livenessProbe", "readinessProbe"):
        headers = api[probe]["httpGet"]["httpHeaders"]
        assert headers == [{"name": "Host", "value": f"agentry-api.{NAMESPACE}.svc"}]
        assert headers[0]["value"] in trusted_hosts(default)


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        ({"api.guestSessions": "yes"}, "guestSessions"),
        ({"api.cookieSecure": "1"}, "cookieSecure"),
        ({"api.trustedHosts": "{https://agentry.example.com}"}, "trustedHosts"),
        ({"api.trustedHosts": "{agentry.example.com:443}"}, "trustedHosts"),
        ({"api.trustedHosts": "{Agentry.Example.com}"}, "trustedHosts"),
    ],
)
def test_schema_refuses_bad_api_switches(sets: dict[str, str], error: str) -> None:
    flat: dict[str, Any] = {k.replace(".", "__"): v for k, v in sets.items()}
    with pytest.raises(RenderError, match=re.escape(error)):
        render(**flat)


# --- Firestore --------------------------------------------------------------------------------------


def test_workload_identity_without_a_project_is_refused() -> None:
    """On GKE the project is known; without it the API and the gateway's ledger would use a placeholder."""
    with pytest.raises(RenderError, match=r"workloadIdentity\.enabled needs gcp\.projectId"):
        render(workloadIdentity__enabled="true")
    assert render(workloadIdentity__enabled="true", gcp__projectId="p-123456")
    assert render(workloadIdentity__enabled="true", firestore__emulator__enabled="true")


def test_the_gateway_ledger_follows_the_api_database(default: list[Obj]) -> None:
    gateway = env_of(container(default, GATEWAY))
    assert gateway["AGENTRY_GATEWAY_LEDGER"] == "firestore"
    assert "GOOGLE_CLOUD_PROJECT" not in gateway and "GOOGLE_CLOUD_PROJECT" not in api_env(default)
    objs = render(gcp__projectId="p-123456")
    assert env_of(container(objs, GATEWAY))["GOOGLE_CLOUD_PROJECT"] == "p-123456"
    assert api_env(objs)["GOOGLE_CLOUD_PROJECT"] == "p-123456"
    dev = render(firestore__emulator__enabled="true")
    emulator = f"agentry-firestore-emulator.{NAMESPACE}.svc:8080"
    assert env_of(container(dev, GATEWAY))["FIRESTORE_EMULATOR_HOST"] == emulator


def test_install_yaml_needs_its_token_keys_from_the_admin() -> None:
    docs = load_all((REPO / "manifests" / "install.yaml").read_text())
    assert not find(docs, "Secret")
    gateway = one(docs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    secrets = {v["secret"]["secretName"] for v in gateway["volumes"] if "secret" in v}
    assert secrets == {"agentry-token-keys", "llm-keys"}
