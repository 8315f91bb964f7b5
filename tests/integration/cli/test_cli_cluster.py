"""Cluster mode (`--kubeconfig`): agents and runs as custom resources on the real kube-apiserver, with
the real operator turning a run into a Job; `--wait` exits by the run's phase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lightkube import Client

from agentry_common.resources import Execution
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually, patient, play_kubelet
from tests.integration.api.helpers import REPORT, pod_of

from .conftest import Cli

pytestmark = pytest.mark.integration

AGENT = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "hello-cli"},
    "spec": {"instructions": "Say hello.", "model": {"name": "claude-sonnet-4-5"}, "tools": ["files"]},
}


def test_agents_and_runs_through_the_kubernetes_api(
    kube: ControlPlane, kube_client: Client, namespace: str, operator_ready: None, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "absent.yaml")  # no API configured: cluster mode needs none
    k = ("--kubeconfig", str(kube.kubeconfig), "-n", namespace)
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(AGENT))
    applied = cli(*k, "agents", "apply", "-f", str(path), "-o", "json")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["items"] == [
        {"id": "hello-cli", "name": "hello-cli", "action": "applied"}
    ]
    listed = json.loads(cli(*k, "agents", "list", "-o", "json").stdout)["items"]
    assert [a["metadata"]["name"] for a in listed] == ["hello-cli"]
    assert listed[0]["spec"]["instructions"] == "Say hello."
    eventually(lambda: "True" in cli(*k, "agents", "list").stdout, 30, "the operator to mark the Agent Ready")

    proc = cli.spawn(*k, "runs", "submit", "hello-cli", "--input", "hi", "--wait", "-o", "json")

    def created() -> str | None:
        items = list(kube_client.list(Execution, namespace=namespace))
        return items[0].metadata.name if items and items[0].metadata else None

    name: str = eventually(created, 30, "the CLI's Execution")
    ex = kube_client.get(Execution, name, namespace=namespace)
    assert ex.spec["agentRef"] == {"name": "hello-cli"} and ex.spec["input"] == "hi"
    assert ex.spec["trigger"] == "Manual" and len(ex.spec["correlationId"]) == 32
    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    out, err = proc.communicate(timeout=patient(60))
    assert proc.returncode == 0, err
    assert json.loads(out)["status"]["phase"] == "Succeeded" and "phase=Succeeded" in err

    runs = json.loads(cli(*k, "runs", "list", "-o", "json").stdout)["items"]
    assert [r["metadata"]["name"] for r in runs] == [name]
    assert "Succeeded" in cli(*k, "runs", "list", "--agent", "hello-cli").stdout
    assert (
        json.loads(cli(*k, "runs", "get", name, "-o", "json").stdout)["status"]["result"]["summary"]
        == "All quiet."
    )

    missing = cli(*k, "runs", "submit", "no-such-agent")
    assert missing.returncode == 7 and missing.stderr.startswith("error: NotFound 404"), missing.stderr
    api_only = cli(*k, "logs", name)
    assert api_only.returncode == 2 and "needs the Agentry API" in api_only.stderr
