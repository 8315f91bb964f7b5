"""Agentry on the local cluster: the Helm chart (charts/agentry) with the locally built images.

The operator and the API run in the cluster as they would anywhere (pods of the chart's Deployments,
RBAC, the validating webhook behind its Service, schedule ticks as pods of the operator image). Two
things stay on the host, because neither has an image without a registry: the Firestore emulator (a
JVM from the Google Cloud CLI) listens on the node's address, where the API pod reaches it, and LLM
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
Say = Callable[[str], None]


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

    def values(self) -> dict[str, Any]:
        llm: dict[str, str] = {}
        if self.providers.anthropic_base_url:
            llm["anthropicBaseUrl"] = reachable_from_pods(self.providers.anthropic_base_url)
        if self.providers.openai_base_url:
            llm["openaiBaseUrl"] = reachable_from_pods(self.providers.openai_base_url)
        never = {"tag": self.image_tag, "pullPolicy": "Never"}  # imported images: never pull
        values: dict[str, Any] = {
            "gcp": {"projectId": self.project},
            "operator": {
                "image": never,
                "workspaceImage": {"tag": self.image_tag},
                "llm": llm,
                # One instance, restarted by `make dev`: no peering wait between an old and a new pod.
                "peering": {"enabled": False},
            },
            "api": {
                "image": never,
                "extraEnv": [
                    {"name": k, "value": v}
                    for k, v in {"FIRESTORE_EMULATOR_HOST": self.firestore_host, **self.api_env}.items()
                ],
            },
        }
        return _merge(values, self.extra_values)

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
        """helm upgrade --install, waiting until the operator and the API are ready."""
        t0 = time.monotonic()
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

    def diagnose(self) -> str:
        kubectl = self.cluster.plane.kubectl
        pods = kubectl("-n", SYSTEM_NS, "get", "pods", "-o", "wide", check=False).stdout
        events = kubectl(
            "-n", SYSTEM_NS, "get", "events", "--sort-by=.lastTimestamp", check=False
        ).stdout.splitlines()[-15:]
        return f"pods in {SYSTEM_NS}:\n{pods}\nlast events:\n" + "\n".join(events)

    def api_service(self) -> str:
        """ClusterIP:port of the API Service."""
        svc = json.loads(self.cluster.plane.kubectl("-n", SYSTEM_NS, "get", "service", "agentry-api", "-o",
                                                    "json").stdout)  # fmt: skip
        return f"{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"

    def apply_secret(self) -> bool:
        """The `llm-keys` Secret the sample Agents reference; False if no key is configured."""
        data = self.providers.secret_data()
        if not data:
            return False
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": LLM_SECRET, "namespace": WORKLOADS_NS},
            "type": "Opaque",
            "stringData": data,
        }
        self.cluster.apply([secret])
        return True

    def apply_samples(self) -> list[str]:
        """The sample Agents (not the sample Execution: that one is `kubectl create`d to run)."""
        names = []
        for path in sorted(SAMPLES.glob("agent-*.yaml")):
            docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
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
        agent["spec"]["secrets"] = [
            {"env": "OPENAI_API_KEY", "secretKeyRef": {"name": LLM_SECRET, "key": "openai"}}
        ]
        return agent


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
