"""`helm install` of charts/agentry into the real test control plane (there is no kubelet: pods never
start, so the tests assert on objects, on RBAC as the API server evaluates it, and on Pod Security
admission in the workload namespace and in the release namespace, which the test labels "restricted"
too). The release runs with the LLM gateway on."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.resources.batch_v1 import Job
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret

from agentry_common.naming import token_secret_name
from agentry_localcluster import localhttp
from agentry_localcluster.kube import REPO, ControlPlane
from agentry_localcluster.procs import Proc, start_with_ports
from agentry_operator.builders.cronjob import build_cronjob
from agentry_operator.builders.job import build_job
from agentry_operator.kube import Agent, Execution
from agentry_operator.settings import Settings
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import CRD_NAMES
from tests.fixtures.servers import plane_client
from tests.unit.chart.render import CHART, env_of, helm

pytestmark = pytest.mark.integration

RELEASE = "agentry-test"  # fullname "agentry-test": no clash with manifests/install.yaml's "agentry-*"
SNAPSHOT = Path(__file__).with_name("rbac_snapshot.yaml")
UPDATE_SNAPSHOT = os.environ.get("AGENTRY_UPDATE_SNAPSHOTS") == "1"
ACCOUNTS = {"operator": "agentry-test-operator", "api": "agentry-test-api", "tick": "agentry-test-tick"}
ACCOUNTS |= {"workload": "agentry-test-workload", "gateway": "agentry-test-gateway"}
IN_RELEASE_NAMESPACE = ("operator", "api", "gateway")
AGENT_SPEC = {"instructions": "Say hello.", "model": {"name": "claude-sonnet-4-5"}}


@dataclass
class Release:
    kube: ControlPlane
    namespace: str
    workloads: str
    install_output: str
    manifest: str

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(helm()), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
            env={**os.environ, **self.kube.env()},
        )

    def objects(self) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.manifest) if d]

    def operator_env(self) -> dict[str, str]:
        deployment = next(
            o for o in self.objects() if o["kind"] == "Deployment" and "operator" in o["metadata"]["name"]
        )
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0])
        return {k: v for k, v in env.items() if isinstance(v, str)}


def _adopt_existing_crds(kube: ControlPlane, namespace: str) -> None:
    """Other modules of the session may have applied manifests/crds: let this release adopt them."""
    for crd in CRD_NAMES:
        if kube.kubectl("get", f"crd/{crd}", check=False).returncode != 0:
            continue
        kube.kubectl(
            "annotate",
            "--overwrite",
            f"crd/{crd}",
            f"meta.helm.sh/release-name={RELEASE}",
            f"meta.helm.sh/release-namespace={namespace}",
        )
        kube.kubectl("label", "--overwrite", f"crd/{crd}", "app.kubernetes.io/managed-by=Helm")


@pytest.fixture(scope="module")
def release(kube: ControlPlane) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:6]
    namespace, workloads = f"agentry-it-{suffix}", f"agentry-wl-{suffix}"
    _adopt_existing_crds(kube, namespace)
    # The release namespace enforces Pod Security "restricted" as well: the operator, API, emulator and
    # gateway pods must be admitted by it (the ReplicaSet controller creates them; no kubelet runs them).
    kube.kubectl("create", "namespace", namespace)
    kube.kubectl("label", f"namespace/{namespace}", "pod-security.kubernetes.io/enforce=restricted")
    rel = Release(kube, namespace, workloads, "", "")
    result = rel.helm(
        "install",
        RELEASE,
        str(CHART),
        f"--namespace={namespace}",
        "--create-namespace",
        f"--set=workloads.namespace={workloads}",
        # Every optional object the chart can create on a plain cluster, to see them all admitted.
        "--set=firestore.emulator.enabled=true",
        "--set=api.ingress.enabled=true",
        "--set=api.autoscaling.enabled=true",
        "--set=workloadIdentity.enabled=true",
        "--set=workloads.serviceAccount.gcpServiceAccount=runs@agentry-test.iam.gserviceaccount.com",
        "--set=gateway.enabled=true",
        "--set=gateway.providerKeys.existingSecret=llm-keys",
        "--set=gateway.autoscaling.enabled=true",
        # No kubelet runs the operator here, so no webhook server answers: the (default) Fail policy
        # would refuse every Agent these tests create.
        "--set=operator.webhook.failurePolicy=Ignore",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rel.install_output = result.stdout
    rel.manifest = rel.helm("get", "manifest", RELEASE, f"--namespace={namespace}").stdout
    kube.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{name}" for name in CRD_NAMES),
    )
    yield rel
    rel.helm("uninstall", RELEASE, f"--namespace={namespace}", "--wait", "--timeout=120s", check=False)
    # crds.keep and workloads.keepNamespace leave those on purpose; the test cleans its namespaces.
    kube.kubectl("delete", "namespace", namespace, workloads, "--wait=false", check=False)


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane of this module's own: the session's test operator (all namespaces, no gateway)
    must not reconcile the Executions given to the operator that runs with the chart's RBAC."""
    plane = ControlPlane(tmp_path_factory.mktemp("chart-kube"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def client(kube: ControlPlane) -> Iterator[Client]:
    with plane_client(kube) as c:
        yield c


# --- objects -------------------------------------------------------------------------------------


def test_every_rendered_object_exists(release: Release) -> None:
    expected = {f"{o['kind']}/{o['metadata']['name']}".lower() for o in release.objects()}
    got = release.kube.kubectl("get", "-f", "-", "-o", "name", input=release.manifest).stdout.split()
    # kubectl prints group-qualified kinds (deployment.apps/x): compare kind and name only.
    got_short = {f"{k.split('.')[0]}/{n}".lower() for k, n in (line.split("/", 1) for line in got)}
    assert got_short == expected
    kinds = {o["kind"] for o in release.objects()}
    assert {
        "CustomResourceDefinition",
        "ValidatingWebhookConfiguration",
        "Ingress",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Secret",
        "ConfigMap",
        "PodDisruptionBudget",
    } <= kinds
    gateway = {o["kind"] for o in release.objects() if o["metadata"]["name"] == f"{RELEASE}-gateway"}
    assert gateway == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    }


def test_install_prints_what_to_do_next(release: Release) -> None:
    out = release.install_output
    assert f"kubectl -n {release.workloads} apply -f manifests/samples/agent-on-demand.yaml" in out
    # With the gateway, provider keys go to the release namespace, for the gateway only.
    assert f"kubectl -n {release.namespace} create secret generic llm-keys" in out
    assert f"http://{RELEASE}-gateway.{release.namespace}.svc:8090" in out
    assert f"-n {release.workloads} create secret" not in out
    assert "http://agentry.example.com/" in out  # the Ingress host: where the dashboard is
    assert "Development mode" in out


def test_workload_namespace_enforces_restricted(release: Release, client: Client) -> None:
    labels = release.kube.kubectl("get", f"namespace/{release.workloads}", "-o", "yaml").stdout
    meta = yaml.safe_load(labels)["metadata"]
    assert meta["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert meta["annotations"]["helm.sh/resource-policy"] == "keep"


def test_upgrade_keeps_generated_secrets(release: Release, client: Client) -> None:
    """Helm generates the webhook certificate, the session key and the token keys; an upgrade must not
    rotate them, and keeps a token key added for a rotation (docs/governance.md)."""
    names = (f"{RELEASE}-webhook-tls", f"{RELEASE}-api-session", f"{RELEASE}-token-keys")
    keys = client.get(Secret, f"{RELEASE}-token-keys", namespace=release.namespace).data or {}
    assert len(keys) == 1 and re.fullmatch(r"20\d\d-\d\d", next(iter(keys))), keys
    assert len(base64.b64decode(next(iter(keys.values())))) >= 32
    # A rotation: a later key id next to the first one, added with kubectl.
    new_key = base64.b64encode(b"r" * 48).decode()
    release.kube.kubectl(
        "patch",
        "secret",
        f"{RELEASE}-token-keys",
        f"--namespace={release.namespace}",
        "--type=merge",
        "--patch",
        yaml.safe_dump({"data": {"2999-01": new_key}}),
    )
    before = [client.get(Secret, name, namespace=release.namespace).data for name in names]
    release.helm("upgrade", RELEASE, str(CHART), f"--namespace={release.namespace}", "--reuse-values")
    after = [client.get(Secret, name, namespace=release.namespace).data for name in names]
    assert before == after
    assert (after[2] or {}).keys() == {*keys, "2999-01"}
    config = yaml.safe_load(
        release.kube.kubectl("get", f"validatingwebhookconfiguration/{RELEASE}-webhook", "-o", "yaml").stdout
    )
    assert config["webhooks"][0]["clientConfig"]["caBundle"] == (after[0] or {})["ca.crt"]


# --- RBAC ----------------------------------------------------------------------------------------

ROW = re.compile(r"^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$")


def can_i_list(kube: ControlPlane, namespace: str, user: str) -> set[tuple[str, str, str, str]]:
    out = kube.kubectl("auth", "can-i", "--list", f"--namespace={namespace}", f"--as={user}").stdout
    rows = set()
    for line in out.splitlines()[1:]:
        m = ROW.match(line)
        assert m, f"unexpected `kubectl auth can-i --list` line: {line!r}"
        resource, urls, names, verbs = m.groups()
        rows.add((resource, urls, names, " ".join(sorted(verbs.split()))))
    return rows


def effective_rbac(release: Release) -> dict[str, dict[str, dict[str, list[str]]]]:
    """Per ServiceAccount and namespace: what it may do beyond any authenticated ServiceAccount."""
    kube = release.kube
    where = {"release": release.namespace, "workloads": release.workloads, "other": "default"}
    baseline = {
        k: can_i_list(kube, ns, "system:serviceaccount:default:agentry-nobody") for k, ns in where.items()
    }
    names = {release.namespace: "<release>", release.workloads: "<workloads>", RELEASE: "<fullname>"}

    def placeholder(text: str) -> str:
        for real, alias in names.items():
            text = text.replace(real, alias)
        return text

    snapshot: dict[str, dict[str, dict[str, list[str]]]] = {}
    for role, account in ACCOUNTS.items():
        home = release.namespace if role in IN_RELEASE_NAMESPACE else release.workloads
        user = f"system:serviceaccount:{home}:{account}"
        snapshot[role] = {}
        for key, ns in where.items():
            rows = can_i_list(kube, ns, user) - baseline[key]
            entries = {}
            for resource, urls, resource_names, verbs in sorted(rows):
                what = resource or f"url {urls}"
                if resource_names:
                    what += f" ({placeholder(resource_names)})"
                entries[what] = verbs.split()
            snapshot[role][key] = entries
    return snapshot


def test_rbac_matches_the_minimal_snapshot(release: Release) -> None:
    got = effective_rbac(release)
    header = (
        "# Effective permissions of the chart's ServiceAccounts (kubectl auth can-i --list --as=...),\n"
        "# beyond what any authenticated ServiceAccount may do. `release`: the chart's namespace;\n"
        "# `workloads`: the workload namespace; `other`: any other namespace. After an RBAC change:\n"
        "#   AGENTRY_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/integration/chart -k rbac\n"
    )
    if UPDATE_SNAPSHOT:
        SNAPSHOT.write_text(header + yaml.safe_dump(got, sort_keys=False, default_flow_style=None, width=110))
    expected = yaml.safe_load(SNAPSHOT.read_text())
    assert got == expected, "RBAC changed: review, then regenerate the snapshot (see its header)"


def test_only_the_operator_may_read_secrets_and_only_in_the_workload_namespace(release: Release) -> None:
    """With the gateway on, the operator writes each run's token into a Secret in the workload namespace;
    nobody reads Secrets in the release namespace, where the provider keys and token keys are. The API
    may `get` (not list or watch) Secrets of the workload namespace: the agent policy's opt-in label."""
    for role, account in ACCOUNTS.items():
        home = release.namespace if role in IN_RELEASE_NAMESPACE else release.workloads
        for ns in (release.namespace, release.workloads):
            for verb in ("get", "list", "watch"):
                if role == "operator" and ns == release.workloads:
                    continue
                if role == "api" and ns == release.workloads and verb == "get":
                    continue
                result = release.kube.kubectl(
                    "auth",
                    "can-i",
                    verb,
                    "secrets",
                    f"--namespace={ns}",
                    f"--as=system:serviceaccount:{home}:{account}",
                    check=False,
                )
                assert result.stdout.strip() == "no", f"{account} may {verb} secrets in {ns}"
    # Run-token Secrets: create, and get to adopt one after a crash; the GC deletes them with their run.
    operator = f"system:serviceaccount:{release.namespace}:{ACCOUNTS['operator']}"
    for verb, allowed in (
        ("create", "yes"),
        ("get", "yes"),
        ("list", "no"),
        ("watch", "no"),
        ("delete", "no"),
    ):
        result = release.kube.kubectl(
            "auth",
            "can-i",
            verb,
            "secrets",
            f"--namespace={release.workloads}",
            f"--as={operator}",
            check=False,
        )
        assert result.stdout.strip() == allowed, f"the operator may {verb} secrets: {result.stdout.strip()}"


# --- Pod Security in the release namespace ---------------------------------------------------------


def test_gateway_pods_are_admitted_in_the_restricted_release_namespace(
    release: Release, client: Client
) -> None:
    """The Deployment controllers create the pods; PodSecurity "restricted" admits or refuses each."""
    for component in ("gateway", "operator", "api", "firestore-emulator"):
        pods = eventually(
            lambda c=component: list(  # type: ignore[misc]
                client.list(Pod, namespace=release.namespace, labels={"app.kubernetes.io/component": c})
            ),
            timeout=60,
            what=f"the {component} pods to be created (admitted by PodSecurity restricted)",
        )
        assert pods, component
    (pod, *_) = client.list(
        Pod, namespace=release.namespace, labels={"app.kubernetes.io/component": "gateway"}
    )
    assert pod.spec is not None and pod.spec.automountServiceAccountToken is False
    mounted = {v.secret.secretName for v in pod.spec.volumes or [] if v.secret is not None}
    assert mounted == {"llm-keys", f"{RELEASE}-token-keys"}


# --- Pod Security in the workload namespace --------------------------------------------------------


def _agent_and_execution(
    client: Client, ns: str, name: str, **spec: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    agent = client.create(
        Agent.from_dict({"metadata": {"name": name, "namespace": ns}, "spec": {**AGENT_SPEC, **spec}})
    )
    execution = client.create(
        Execution.from_dict(
            {"metadata": {"name": f"{name}-1", "namespace": ns}, "spec": {"agentRef": {"name": name}}}
        )
    )
    return agent.to_dict(), execution.to_dict()


def _config_from_chart(release: Release, **overrides: str) -> Settings:
    """The operator's settings exactly as the chart's Deployment sets them."""
    fields = set(Settings.model_fields)
    settings = {k.removeprefix("AGENTRY_").lower(): v for k, v in release.operator_env().items()}
    return Settings(**{k: v for k, v in {**settings, **overrides}.items() if k in fields})


def test_operator_job_is_admitted_in_the_restricted_namespace(release: Release, client: Client) -> None:
    ns = release.workloads
    agent, execution = _agent_and_execution(client, ns, "admitted")
    config = _config_from_chart(release)
    assert config.governed  # the chart's gateway: run pods get a run-token Secret, not provider keys
    job = build_job(execution, agent, "corr-1", config, token_secret="admitted-1-run-token")
    pod_spec = job["spec"]["template"]["spec"]
    assert "llm-keys" not in yaml.safe_dump(pod_spec)
    # A session operator may already have made this Execution's Job; ours must be a Job of its own.
    job["metadata"]["name"] = f"{job['metadata']['name'][:50]}-chart"
    result = release.kube.kubectl("create", "-f", "-", input=yaml.safe_dump(job), check=False)
    assert result.returncode == 0, result.stderr
    assert "violate" not in result.stderr, result.stderr  # PodSecurity warns on Jobs, refuses Pods
    name = job["metadata"]["name"]
    pods = eventually(
        lambda: list(client.list(Pod, namespace=ns, labels={"batch.kubernetes.io/job-name": name})),
        what=f"the Job controller to create a pod for {name} (Pod Security admitted it)",
    )
    assert (
        pods[0].spec is not None
        and pods[0].spec.containers[0].image == job["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def test_schedule_tick_pod_is_admitted_with_its_service_account(release: Release, client: Client) -> None:
    ns = release.workloads
    agent, _ = _agent_and_execution(client, ns, "ticking", schedule={"cron": "0 8 * * 1", "timeZone": "UTC"})
    cronjob = build_cronjob(agent, _config_from_chart(release))
    pod_spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == ACCOUNTS["tick"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "tick-probe", "namespace": ns},
        "spec": pod_spec,
    }
    # The pod as the CronJob would create it: ServiceAccount admission refuses it if the account is missing.
    release.kube.kubectl("create", "-f", "-", input=yaml.safe_dump(pod))
    assert client.get(Pod, "tick-probe", namespace=ns).spec.serviceAccountName == ACCOUNTS["tick"]  # type: ignore[union-attr]


def test_non_compliant_pod_is_refused(release: Release) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "privileged", "namespace": release.workloads},
        "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]},
    }
    result = release.kube.kubectl("create", "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert result.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in result.stderr
    assert "privileged" in result.stderr


# --- the operator itself, with nothing but the chart's RBAC ----------------------------------------


def _service_account_kubeconfig(release: Release, path: Path) -> Path:
    token = release.kube.kubectl(
        "create", "token", ACCOUNTS["operator"], f"--namespace={release.namespace}", "--duration=1h"
    ).stdout.strip()
    ca = (release.kube.workdir / "pki" / "ca.crt").read_bytes()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "c",
                "cluster": {
                    "server": release.kube.server,
                    "certificate-authority-data": base64.b64encode(ca).decode(),
                },
            }
        ],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _policy_file(client: Client, release: Release, tmp_path: Path) -> Path:
    found = [
        cm for cm in client.list(ConfigMap, namespace=release.namespace) if "policy.json" in (cm.data or {})
    ]
    path = tmp_path / "policy.json"
    path.write_text((found[0].data or {})["policy.json"])
    return path


def test_operator_works_with_exactly_the_charts_rbac(
    release: Release, client: Client, tmp_path: Path
) -> None:
    """The snapshot says the RBAC is minimal; this says it is enough: the real operator, logged in as
    the chart's ServiceAccount with the chart's settings, reconciles an Agent with a schedule and an
    Execution without a single 403."""
    ns = release.workloads
    env = dict(release.operator_env())
    # The chart points the operator at the in-cluster gateway and its mounted token keys; here the real
    # gateway runs next to it with the keys of the chart's Secret (an operator that governs runs calls
    # its admission, then writes the run token into a Secret with the chart's RBAC).
    assert env["AGENTRY_GATEWAY_URL"] == f"http://{RELEASE}-gateway.{release.namespace}.svc:8090"
    keys_dir = tmp_path / "token-keys"
    keys_dir.mkdir()
    token_keys = client.get(Secret, f"{RELEASE}-token-keys", namespace=release.namespace).data or {}
    for kid, value in token_keys.items():
        (keys_dir / kid).write_bytes(base64.b64decode(value))

    def gateway_on(ports: tuple[int, ...]) -> tuple[Proc, int]:
        gateway = Proc(
            "gateway-for-chart-operator",
            [sys.executable, "-m", "agentry_gateway"],
            tmp_path / "gateway.log",
            env={
                "AGENTRY_GATEWAY_HOST": "127.0.0.1",
                "AGENTRY_GATEWAY_PORT": str(ports[0]),
                "AGENTRY_GATEWAY_LEDGER": "memory",
                "AGENTRY_TOKEN_KEYS_DIR": str(keys_dir),
            },
        ).start()
        gateway.wait_ready(
            lambda: localhttp.get(f"http://127.0.0.1:{ports[0]}/healthz", timeout=1).is_success,
            60,
            "healthy",
            ports=ports,
        )
        return gateway, ports[0]

    gateway, gateway_port = start_with_ports("the gateway", 1, gateway_on)
    env.update(
        {
            "KUBECONFIG": str(_service_account_kubeconfig(release, tmp_path / "operator.kubeconfig")),
            # The chart's webhook Service has no endpoints here (no kubelet): no webhook server either.
            "AGENTRY_WEBHOOK_ENABLED": "false",
            "POD_ID": "chart-test-operator",
            "POD_NAME": "chart-test-operator",  # the downward API's value in a pod
            "AGENTRY_GATEWAY_URL": f"http://127.0.0.1:{gateway_port}",
            "AGENTRY_TOKEN_KEYS_DIR": str(keys_dir),
            "AGENTRY_ANTHROPIC_BASE_URL": f"http://127.0.0.1:{gateway_port}",
            "AGENTRY_OPENAI_BASE_URL": f"http://127.0.0.1:{gateway_port}/v1",
            # The chart mounts its policy ConfigMap there; here the same file is written beside it.
            "AGENTRY_POLICY_FILE": str(_policy_file(client, release, tmp_path)),
        }
    )

    def operator_on(ports: tuple[int, ...]) -> tuple[Proc, int]:
        health, metrics = ports
        proc = Proc(
            "operator-as-chart-sa",
            [
                sys.executable,
                "-m",
                "agentry_operator.main",
                f"--namespace={ns}",
                f"--liveness=http://127.0.0.1:{health}/healthz",
            ],
            tmp_path / "operator.log",
            env={**env, "AGENTRY_METRICS_PORT": str(metrics)},
        ).start()
        proc.wait_ready(
            lambda: localhttp.get(f"http://127.0.0.1:{health}/healthz", timeout=1).is_success,
            60,
            "healthy",
            ports=ports,
        )
        return proc, health

    try:
        proc, _ = start_with_ports("the operator", 2, operator_on)
    except BaseException:
        gateway.stop()
        raise
    try:
        _, execution = _agent_and_execution(
            client, ns, "rbac", schedule={"cron": "*/5 * * * *", "timeZone": "UTC"}
        )
        ex_name = execution["metadata"]["name"]
        jobs = eventually(
            lambda: list(client.list(Job, namespace=ns, labels={"agentry.dev/execution": ex_name})),
            timeout=60,
            what="the operator to create the Execution's Job",
        )
        assert jobs[0].spec is not None and jobs[0].metadata is not None
        # Governed (the chart's gateway): the run token went into a Secret of the run, under the chart's RBAC.
        token = client.get(Secret, token_secret_name(str(jobs[0].metadata.name)), namespace=ns)
        assert token.data
        eventually(
            lambda: release.kube.kubectl(
                "get", "cronjobs", "-n", ns, "-l", "agentry.dev/agent=rbac", "-o", "name"
            ).stdout.strip(),
            timeout=60,
            what="the operator to apply the Agent's CronJob",
        )
        # Leader election (the chart's default): the operator took the chart's Lease with the chart's Role.
        lease = eventually(
            lambda: yaml.safe_load(
                release.kube.kubectl(
                    "get", "lease", f"{RELEASE}-operator", "-n", release.namespace, "-o", "yaml", check=False
                ).stdout
                or "{}"
            ).get("spec"),
            timeout=30,
            what="the operator to hold the chart's Lease",
        )
        assert str(lease.get("holderIdentity", "")).startswith("chart-test-operator_"), lease
    finally:
        proc.stop()
        gateway.stop()
    log = (tmp_path / "operator.log").read_text()
    forbidden = [line for line in log.splitlines() if "forbidden" in line.lower() or " 403" in line]
    assert forbidden == [], "\n".join(forbidden[:10])


def test_plain_install_yaml_applies_in_one_pass(kube: ControlPlane, release: Release) -> None:
    """manifests/install.yaml needs nothing applied before it (no custom resource of a CRD it creates)."""
    text = (REPO / "manifests" / "install.yaml").read_text()
    # The Helm release above already owns the CRDs' labels: take them over, as a second install would.
    result = kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text, check=False)
    try:
        assert result.returncode == 0, result.stderr
        deployments = kube.kubectl("get", "deployments", "-n", "agentry-system", "-o", "name").stdout.split()
        assert sorted(deployments) == [
            "deployment.apps/agentry-api",
            "deployment.apps/agentry-egress",
            "deployment.apps/agentry-firestore-emulator",
            "deployment.apps/agentry-gateway",
            "deployment.apps/agentry-operator",
        ]
    finally:
        # Everything but the CRDs, which other tests of the session use.
        rest = [d for d in yaml.safe_load_all(text) if d and d["kind"] != "CustomResourceDefinition"]
        kube.kubectl(
            "delete",
            "--ignore-not-found",
            "--wait=false",
            "-f",
            "-",
            input=yaml.safe_dump_all(rest),
            check=False,
        )
