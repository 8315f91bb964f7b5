"""Helpers of the node tests: the running stack, kubectl, waiting for an Execution's phase."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from agentry_common import constants as c
from agentry_common import pool
from agentry_localcluster import localhttp
from agentry_localcluster import node as n
from agentry_localcluster.cluster import Cluster
from agentry_localcluster.firestore import FirestoreEmulator
from agentry_localcluster.images import build_images
from agentry_localcluster.install import WORKLOADS_NS, Install, Providers
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

ANTHROPIC_KEY = "sk-ant-e2e-node-0123456789abcdef"
MODEL = "claude-sonnet-4-6"
API_VERSION = "agentry.dev/v1alpha1"


@dataclass
class NodeStack:
    cluster: Cluster
    install: Install
    api_url: str  # the API Service, reached from the host through kube-proxy
    admin_token: str
    namespace: str = WORKLOADS_NS

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = self.cluster.plane.kubectl("-n", self.namespace, *args, input=input, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-o", "json")))

    def items(self, kind: str, *selector: str) -> list[dict[str, Any]]:
        return list(json.loads(self.kubectl("get", kind, *selector, "-o", "json"))["items"])

    def warm_pods(self) -> list[dict[str, Any]]:
        """Running pods of the warm pools that no run has claimed (docs/runs.md, "Warm pool")."""
        return [
            pod
            for pod in self.items("pods", "-l", pool.LABEL_POOL)
            if pod["status"].get("phase") == "Running"
            and not pod["metadata"].get("deletionTimestamp")
            and c.ANNOTATION_EXECUTION not in (pod["metadata"].get("annotations") or {})
        ]

    def apply_agent(self, name: str, spec: dict[str, Any]) -> None:
        agent = {
            "apiVersion": "agentry.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.apply(json.dumps(agent))

    def apply(self, manifest: str) -> None:
        """kubectl apply, once the admission webhook answers (this may be the first test after the
        install, while the operator's webhook Service has no endpoint yet)."""
        deadline = time.monotonic() + patient(60)
        while True:
            try:
                self.kubectl("apply", "-f", "-", input=manifest)
                return
            except AssertionError as exc:
                if "failed calling webhook" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def run(self, agent: str, task: str, parent: str | None = None) -> str:
        """kubectl create an Execution of agent (a follow-up of `parent`); its name."""
        spec: dict[str, Any] = {"agentRef": {"name": agent}, "input": task}
        if parent:
            spec["parentRef"] = {"name": parent}
        execution = {
            "apiVersion": API_VERSION,
            "kind": "Execution",
            "metadata": {"generateName": f"{agent}-"},
            "spec": spec,
        }
        return (
            self.kubectl("create", "-f", "-", "-o", "name", input=json.dumps(execution))
            .strip()
            .split("/")[-1]
        )

    def wait_phase(self, execution: str, phases: tuple[str, ...], timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + patient(timeout)
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            obj = self.get("execution", execution)
            if obj.get("status", {}).get("phase") in phases:
                return obj
            time.sleep(1)
        raise AssertionError(
            f"execution {execution} not in {phases} after {timeout:.0f} s: {json.dumps(obj.get('status'))}\n"
            + self.kubectl("get", "jobs,pods", "-o", "wide", check=False)
            + self.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False)[-3000:]
        )

    def running_containers(self, pod: str) -> list[str]:
        """Containers the node's runtime still runs for a pod (crictl: the runtime's view, not the API's)."""
        assert self.cluster.assets is not None
        out = n.crictl(self.cluster.assets, "ps", "-q", "--label", f"io.kubernetes.pod.name={pod}")
        return out.stdout.split()


@contextmanager
def booted(
    workdir: Path, upstream: ScriptedLLM, say: Callable[[str], None], owner: str
) -> Iterator[NodeStack]:
    """The local node with Agentry installed by its chart, governed as `make dev` installs it, with
    `upstream` as the provider behind the gateway; stopped on exit (its logs stay in workdir)."""
    cluster = Cluster(workdir, owner=owner)
    firestore = FirestoreEmulator(workdir / "firestore", host=n.NODE_IP)
    token = secrets.token_urlsafe(24)
    try:
        images = build_images(say)
        # Another run of the e2e tier (or `make dev`) may hold the machine's node: wait for it.
        cluster.up(say, images, wait_for_lock=1200)
        firestore.start()
        install = Install(
            cluster,
            firestore.address,
            project=f"e2e-{uuid.uuid4().hex[:8]}",
            providers=Providers(anthropic_key=ANTHROPIC_KEY, anthropic_base_url=upstream.url),
            # Notification sinks on the node's address (tests/e2e/node/test_triggers.py).
            api_env={"AGENTRY_ADMIN_TOKEN": token, "AGENTRY_NOTIFY_ALLOWED_HOSTS": f'["{n.NODE_IP}"]'},
        )
        install.install(say)
        yield NodeStack(cluster, install, f"http://{install.api_service()}", token)
    finally:
        say(f"stopping the cluster (logs stay in {workdir})")
        firestore.stop()
        cluster.down()


def agent_spec(**extra: Any) -> dict[str, Any]:
    """An Agent as people write one for a governed install: no endpoint, no key (the gateway has them)."""
    spec: dict[str, Any] = {
        "instructions": "You are an end-to-end test agent.",
        "model": {"provider": "anthropic", "name": MODEL},
        "tools": ["shell"],
        "timeoutSeconds": 120,
    }
    spec.update(extra)
    return spec


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def api_get(stack: NodeStack, path: str) -> httpx.Response:
    return localhttp.get(
        stack.api_url + path, headers={"Authorization": f"Bearer {stack.admin_token}"}, timeout=10
    )
