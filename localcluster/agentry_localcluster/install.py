"""Agentry on the local cluster: the Helm chart (charts/agentry) with the locally built images.

The operator, the API and the LLM gateway run in the cluster as they would anywhere (pods of the
chart's Deployments, RBAC, the validating webhook behind its Service, schedule ticks as pods of the
operator image). Governed by default: provider keys go into the Secret `llm-keys` of the release
namespace, which only the gateway mounts; runs get a per-Execution token instead. Two things stay on
the host, because neither has an image without a registry: the Firestore emulator (a JVM from the
Google Cloud CLI) listens on the node's address, where the API and gateway pods reach it, and LLM
endpoints given as localhost are rewritten to the node's address.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from agentry_common.models import DEFAULT_MODEL
from agentry_common.policy import LABEL_PROVIDER_KEYS, LABEL_REFERABLE

from .cluster import Cluster
from .kube import REPO
from .node import NODE_IP
from .procs import ServerError

CHART = REPO / "charts" / "agentry"
SAMPLES = REPO / "manifests" / "samples"
RELEASE = "agentry"
SYSTEM_NS = "agentry-system"
WORKLOADS_NS = "agentry-workloads"
LLM_SECRET = "llm-keys"
KEY_DIR = "/var/run/agentry/llm-keys"  # where the chart mounts LLM_SECRET in the gateway's pods
# A development budget, so the dashboard and admission show governance at work: every user may spend
# this much a day (docs/governance.md, "Budgets"). AGENTRY_DEV_DAILY_BUDGET_USD changes it.
DEV_DAILY_BUDGET_USD = "10"
Say = Callable[[str], None]
# Without the egress proxy runs reach any public address (the chart's `internet` mode).
NO_EGRESS_PROXY = {
    "egress": {"proxy": {"enabled": False}},
    "workloads": {"networkPolicy": {"egress": "internet"}},
}


def reachable_from_pods(url: str) -> str:
    """A URL on this machine's loopback, as pods reach it (the node's address)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host in ("localhost", "127.0.0.1", "::1", "0.0.0.0"):
        netloc = NODE_IP + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


@dataclass
class Providers:
    """LLM keys and endpoints from the environment of `make dev` (or given by tests)."""

    anthropic_key: str | None = None
    anthropic_base_url: str | None = None
    openai_key: str | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4.1-mini"

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Providers:
        return cls(
            anthropic_key=env.get("ANTHROPIC_API_KEY") or None,
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
            openai_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=env.get("OPENAI_BASE_URL") or None,
            openai_model=env.get("OPENAI_MODEL") or "gpt-4.1-mini",
        )

    @property
    def default_model(self) -> str:
        """The chart's operator.defaultModel: the current default, or the OpenAI-compatible model when
        that is the only provider configured (so an Agent without spec.model runs there)."""
        if self.openai_key and self.openai_base_url and not self.anthropic_key:
            return f"openai/{self.openai_model}"
        return DEFAULT_MODEL

    @property
    def configured(self) -> bool:
        return bool(self.anthropic_key or (self.openai_key and self.openai_base_url))

    def secret_data(self) -> dict[str, str]:
        data = {}
        if self.anthropic_key:
            data["anthropic"] = self.anthropic_key
        if self.openai_key:
            data["openai"] = self.openai_key
        return data


@dataclass
class Install:
    cluster: Cluster
    firestore_host: str  # host:port the API pod uses (the emulator on the node's address)
    project: str = "agentry-dev"
    providers: Providers = field(default_factory=Providers)
    image_tag: str = "dev"
    api_env: dict[str, str] = field(default_factory=dict)  # more environment of the API pods
    extra_values: dict[str, Any] = field(default_factory=dict)
    # The LLM gateway between runs and providers (keys only in the gateway); False: runs get the keys.
    gateway: bool = True
    # With the gateway: runs reach the network only through the egress proxy (egress_values).
    egress_proxy: bool = True
    daily_budget_usd: str = DEV_DAILY_BUDGET_USD

    @property
    def secret_namespace(self) -> str:
        """Where `llm-keys` lives: with the gateway, beside it (never where agents run)."""
        return SYSTEM_NS if self.gateway else WORKLOADS_NS

    def values(self) -> dict[str, Any]:
        never = {"tag": self.image_tag, "pullPolicy": "Never"}  # imported images: never pull
        values: dict[str, Any] = {
            "gcp": {"projectId": self.project},
            "operator": {
                "image": never,
                "workspaceImage": {"tag": self.image_tag},
                # Explicit, not left to the chart: the model of Agents that set no spec.model.
                "defaultModel": self.providers.default_model,
            },
            "api": {
                "image": never,
                # Local development only: a guest session on the first visit, and a cookie sent over
                # plain http (the chart's defaults are off and Secure; install() says so).
                "guestSessions": True,
                "cookieSecure": False,
                # The OpenAPI document and its pages (/docs), off by default: they map every route.
                "openapi": {"enabled": True},
                "extraEnv": _env({"FIRESTORE_EMULATOR_HOST": self.firestore_host, **self.api_env}),
            },
        }
        # The chart's defaults are the gateway and the egress proxy: turned off here unless wanted.
        values.update(self.egress_values(never) if self.gateway and self.egress_proxy else NO_EGRESS_PROXY)
        if self.gateway:
            values["gateway"] = self.gateway_values(never)
        else:
            values["gateway"] = {"enabled": False}
            llm: dict[str, str] = {}
            if self.providers.anthropic_base_url:
                llm["anthropicBaseUrl"] = reachable_from_pods(self.providers.anthropic_base_url)
            if self.providers.openai_base_url:
                llm["openaiBaseUrl"] = reachable_from_pods(self.providers.openai_base_url)
            values["operator"]["llm"] = llm
        return _merge(values, self.extra_values)

    def egress_values(self, image: dict[str, str]) -> dict[str, Any]:
        """Runs reach the network only through the egress proxy (their Agent's allow-list), DNS and the
        gateway. The node's address is the one private destination the proxy may reach: host services
        there stand in for the internet in tests (docs/security.md, "Egress")."""
        proxy = {"image": {"repository": "agentry/squid", **image}, "allowedPrivateCidrs": [f"{NODE_IP}/32"]}
        return {
            "egress": {"proxy": {"enabled": True, **proxy}},
            "workloads": {"networkPolicy": {"egress": "proxy"}},
        }

    def gateway_values(self, image: dict[str, str]) -> dict[str, Any]:
        """One gateway replica with its budgets in the Firestore emulator; channels at the configured
        endpoints (the providers' own when none is given), keys from `llm-keys`."""
        p = self.providers
        channels = []
        for name, base_url in (("anthropic", p.anthropic_base_url), ("openai", p.openai_base_url)):
            channel: dict[str, Any] = {"name": name, "protocol": name, "apiKeyFile": f"{KEY_DIR}/{name}"}
            if base_url:  # a local model server: whatever models it serves, none of them in the price list
                channel["baseURL"] = reachable_from_pods(base_url)
                channel["models"] = ["*"]
            channels.append(channel)
        free = {"inputPerMTok": "0", "outputPerMTok": "0"}  # a local server's models cost nothing
        local = {"unpricedModelPrice": free} if any("baseURL" in c for c in channels) else {}
        # Host services the gateway calls on the node's address (the emulator, a local LLM server).
        ports = {int(self.firestore_host.rsplit(":", 1)[1])}
        for url in (p.anthropic_base_url, p.openai_base_url):
            parts = urlsplit(reachable_from_pods(url or ""))
            if parts.hostname == NODE_IP:
                ports.add(parts.port or (443 if parts.scheme == "https" else 80))
        return {
            "enabled": True,
            "image": image,
            "replicas": 1,
            "podDisruptionBudget": {"enabled": False},  # one replica: a drain must not wait for ever
            "providerKeys": {"existingSecret": LLM_SECRET},  # entries `anthropic` and `openai`
            "extraEnv": _env({"FIRESTORE_EMULATOR_HOST": self.firestore_host}),
            "networkPolicy": {
                "extraEgress": [
                    {
                        "to": [{"ipBlock": {"cidr": f"{NODE_IP}/32"}}],
                        "ports": [{"protocol": "TCP", "port": port} for port in sorted(ports)],
                    }
                ]
            },
            "config": {
                "channels": channels,
                "defaults": {"anthropic": "anthropic", "openai": "openai"},
                "budgets": [
                    {
                        "name": "dev-users",
                        "scope": "user",
                        "limits": [{"window": "day", "costUSD": self.daily_budget_usd}],
                    }
                ],
                **local,
            },
        }

    def helm(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        assert self.cluster.assets is not None
        return subprocess.run(
            [str(self.cluster.assets / "helm"), f"--kubeconfig={self.cluster.plane.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def install(self, say: Say, timeout: float = 300) -> None:
        """helm upgrade --install, waiting until the operator, the API (and the gateway) are ready."""
        t0 = time.monotonic()
        if self.gateway:
            # The gateway's pods mount `llm-keys`: it must exist (empty without a key) before they start.
            self.cluster.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NS}}])
            self.apply_secret(always=True)
        values = self.cluster.workdir / "agentry-values.yaml"
        values.write_text(yaml.safe_dump(self.values(), sort_keys=False))
        result = self.helm(
            "upgrade", "--install", RELEASE, str(CHART),
            f"--namespace={SYSTEM_NS}", "--create-namespace",
            f"--values={values}", "--wait", f"--timeout={int(timeout)}s",
            timeout=timeout + 60,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(
                f"helm upgrade --install {RELEASE} failed: {result.stderr.strip()}\n{self.diagnose()}"
            )
        say(f"    Agentry installed (helm release {RELEASE} in {SYSTEM_NS}) in {time.monotonic() - t0:.0f} s")
        say(
            "    development settings: guest sessions on, session cookie without Secure, OpenAPI at /docs "
            "(the chart's defaults: off, Secure, off)"
        )

    def diagnose(self) -> str:
        kubectl = self.cluster.plane.kubectl
        pods = kubectl("-n", SYSTEM_NS, "get", "pods", "-o", "wide", check=False).stdout
        events = kubectl(
            "-n", SYSTEM_NS, "get", "events", "--sort-by=.lastTimestamp", check=False
        ).stdout.splitlines()[-15:]
        return f"pods in {SYSTEM_NS}:\n{pods}\nlast events:\n" + "\n".join(events)

    def api_service(self) -> str:
        """ClusterIP:port of the API Service."""
        return service_address(self.cluster, "agentry-api")

    def apply_secret(self, always: bool = False) -> bool:
        """The `llm-keys` Secret: the gateway's provider keys (or, without the gateway, the one the
        sample Agents reference). False if no key is configured (then written only if `always`)."""
        data = self.providers.secret_data()
        if not data and not always:
            return False
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": LLM_SECRET,
                "namespace": self.secret_namespace,
                # The Agent policy (agentry_common.policy): with the gateway, provider keys no agent may
                # reference; without it, the Secret the sample Agents reference, so it opts in.
                "labels": {LABEL_PROVIDER_KEYS: "true"} if self.gateway else {LABEL_REFERABLE: "true"},
            },
            "type": "Opaque",
            "stringData": data,
        }
        self.cluster.apply([secret])
        return bool(data)

    def apply_samples(self) -> list[str]:
        """The sample Agents (not the sample Execution: that one is `kubectl create`d to run)."""
        names = []
        for path in sorted(SAMPLES.glob("agent-*.yaml")):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
            if not self.gateway:  # ungoverned: the samples read the key themselves
                for doc in docs:
                    doc["spec"]["secrets"] = [self._key_ref("anthropic")]
            self.cluster.apply(docs, namespace=WORKLOADS_NS)
            names += [d["metadata"]["name"] for d in docs]
        if self.providers.openai_key and self.providers.openai_base_url and not self.providers.anthropic_key:
            self.cluster.apply([self.openai_sample()], namespace=WORKLOADS_NS)
            names.append("hello-openai")
        return names

    def openai_sample(self) -> dict[str, Any]:
        path = SAMPLES / "agent-on-demand.yaml"
        agent: dict[str, Any] = yaml.safe_load(path.read_text())
        agent["metadata"]["name"] = "hello-openai"
        agent["spec"]["model"] = {"provider": "openai", "name": self.providers.openai_model}
        agent["spec"].pop("secrets", None)
        if not self.gateway:
            agent["spec"]["secrets"] = [self._key_ref("openai")]
        return agent

    @staticmethod
    def _key_ref(provider: str) -> dict[str, Any]:
        env = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[provider]
        return {"env": env, "secretKeyRef": {"name": LLM_SECRET, "key": provider}}


def service_address(cluster: Cluster, name: str, namespace: str = SYSTEM_NS) -> str:
    """ClusterIP:port of a Service."""
    result = cluster.plane.kubectl("-n", namespace, "get", "service", name, "-o", "json", check=False)
    if result.returncode != 0:
        raise ServerError(f"no Service {namespace}/{name}: {result.stderr.strip()}")
    svc = json.loads(result.stdout)
    return f"{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def _env(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def sample_paths() -> list[Path]:
    return sorted(SAMPLES.glob("agent-*.yaml"))
