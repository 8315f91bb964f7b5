"""An Agent with only a name and instructions runs on the installation's default model (real API
server, real operator): accepted at `kubectl apply`, status.model shows the default, and its
Execution's Job hands the runtime that model exactly as it would an explicit spec.model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import Client
from lightkube.resources.batch_v1 import Job

from agentry_common.models import DEFAULT_MODEL, parse_model
from agentry_common.naming import job_name
from agentry_localcluster.kube import ControlPlane
from agentry_operator.kube import Agent, Execution
from agentry_workspace.config import load_pod_config
from tests.fixtures.helpers import eventually
from tests.fixtures.operator import OperatorProcess

pytestmark = pytest.mark.integration

MINIMAL = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "first"},
    "spec": {"instructions": "Say hello in one sentence."},
}


def agent_status(client: Client, ns: str) -> dict[str, Any]:
    return dict(client.get(Agent, "first", namespace=ns).status or {})


def runtime_model(job: Any, tmp_path: Path) -> tuple[str, str]:
    """The model the runtime would call, read from the Job's mounted inputs as the pod reads them."""
    annotations = job.spec.template.metadata.annotations
    (tmp_path / "agent.json").write_text(annotations["agentry.dev/agent.json"])
    (tmp_path / "input.txt").write_text(annotations["agentry.dev/input.txt"])
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env if e.value is not None}
    env.update(AGENTRY_CONFIG_DIR=str(tmp_path), AGENTRY_WORKSPACE=str(tmp_path / "ws"))
    env.pop("AGENTRY_DEFAULT_MODEL", None)  # only what the operator wrote into agent.json counts
    model = load_pod_config(env).model
    return model.provider.value, model.name


def test_minimal_agent_runs_on_the_default_model(
    kube: ControlPlane, kube_client: Client, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    assert "AGENTRY_DEFAULT_MODEL" not in operator.env  # the operator's own default
    default = parse_model(DEFAULT_MODEL)

    applied = kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(MINIMAL), check=False)
    assert applied.returncode == 0, applied.stderr  # CRD schema and webhook accept it

    st = eventually(
        lambda: (s := agent_status(kube_client, namespace)).get("model") == DEFAULT_MODEL and s,
        what="status.model to show the default model",
    )
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Reconciled")
    assert "model" not in kube_client.get(Agent, "first", namespace=namespace).spec  # spec untouched
    table = kube.kubectl("get", "agents", "-n", namespace, "-o", "wide").stdout.splitlines()
    assert "MODEL" in table[0] and DEFAULT_MODEL in table[1].split()

    run = {"metadata": {"name": "first-run", "namespace": namespace}, "spec": {"agentRef": {"name": "first"}}}
    ex = kube_client.create(Execution.from_dict(run))
    child = job_name("first-run", ex.metadata.uid)
    job = eventually(lambda: kube_client.get(Job, child, namespace=namespace), what="the Job")
    snapshot = json.loads(job.spec.template.metadata.annotations["agentry.dev/agent.json"])
    assert snapshot["spec"]["model"] == {"provider": default.provider.value, "name": default.name}
    assert runtime_model(job, tmp_path) == (default.provider.value, default.name)
