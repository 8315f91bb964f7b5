"""`agentry runs reply` end to end: against the real API (emulator, control plane, governed operator
and gateway: tests/integration/api/test_follow_ups.py's fixtures), and in cluster mode against the
kube-apiserver; `runs get` shows the thread with each run's cost."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from lightkube import Client

from agentry_common.resources import Execution
from agentry_localcluster.kube import ControlPlane
from tests.fixtures.helpers import eventually, patient, play_kubelet
from tests.integration.api import test_follow_ups as governed
from tests.integration.api.helpers import REPORT, create_agent, pod_of, run, wait_api_phase
from tests.integration.api.test_follow_ups import (
    CHECKPOINT,
    FOLLOW_UP_REPORT,
    finish,
    finished_run,
    set_checkpoint,
)

from .conftest import AGENTRY, Cli

pytestmark = pytest.mark.integration

# The governed stack of the API's follow-up tests (their `api`, `kube_client`, `namespace` replace the
# shared ones here; the `cli` and `user` fixtures use this `api`).
plane, gateway, governed_operator = governed.plane, governed.gateway, governed.governed_operator
api, kube_client, namespace = governed.api, governed.kube_client, governed.namespace


def test_reply_prints_the_new_run_and_wait_follows_it(
    cli: Cli, user: httpx.Client, kube_client: Client, namespace: str
) -> None:
    agent = create_agent(user)
    parent = finished_run(user, kube_client, namespace, agent["id"])

    made = cli("runs", "reply", parent, "Now do the same for Friday.")
    assert made.returncode == 0, made.stderr
    child = made.stdout.strip()
    shown = user.get(f"/api/executions/{child}").json()
    assert shown["parent"] == parent and shown["input"] == "Now do the same for Friday."
    assert kube_client.get(Execution, child, namespace=namespace).spec["parentRef"] == {"name": parent}
    finish(user, kube_client, namespace, child, FOLLOW_UP_REPORT, FOLLOW_UP_REPORT["checkpoint"])

    # --wait, the message from standard input: follows the new run and exits by its phase.
    proc = subprocess.Popen(
        [str(AGENTRY), "runs", "reply", child, "-", "--wait", "-o", "json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env,
    )
    cli.spawned.append(proc)  # killed by the fixture if the test fails first
    assert proc.stdin is not None
    proc.stdin.write("And Saturday?\n")
    proc.stdin.close()
    proc.stdin = None  # closed: communicate() below only reads
    known = {parent, child}

    def newest() -> str | None:
        items = user.get("/api/executions", params={"agent": agent["id"]}).json()["items"]
        fresh = [i["id"] for i in items if i["id"] not in known]
        return fresh[0] if fresh else None

    grandchild: str = eventually(newest, 30, "the follow-up --wait started")
    pod = pod_of(kube_client, namespace, grandchild)
    play_kubelet(kube_client, pod, "Running")
    wait_api_phase(user, grandchild, "Running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    out, err = proc.communicate(timeout=patient(60))
    assert proc.returncode == 0, err
    final = json.loads(out)
    assert final["id"] == grandchild and final["phase"] == "Succeeded" and final["parent"] == child
    assert final["input"] == "And Saturday?\n"
    assert f"run {grandchild} continues {child}" in err and "phase=Succeeded" in err

    # `runs get` in a table: the run's fields, then its thread with each run's cost.
    table = cli("runs", "get", child)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert any(line.startswith("parent") and parent in line for line in lines), table.stdout
    rows = {
        line.split()[1]: line.split()
        for line in lines
        if line.split()[:1] in (["ancestor"], ["self"], ["continuation"])
    }
    assert rows[parent][0] == "ancestor" and rows[parent][4] == "0.0081"
    assert rows[child][0] == "self" and rows[child][4] == "0.0075"
    assert rows[grandchild][0] == "continuation" and rows[grandchild][3] == "1500"
    as_json = json.loads(cli("runs", "get", child, "-o", "json").stdout)
    assert [t["name"] for t in as_json["thread"]] == [parent, child, grandchild]


def test_reply_refusals_exit_with_the_apis_reason(
    cli: Cli, user: httpx.Client, kube_client: Client, namespace: str
) -> None:
    agent = create_agent(user)
    live = run(user, agent["id"])["execution"]
    play_kubelet(kube_client, pod_of(kube_client, namespace, live), "Running")
    wait_api_phase(user, live, "Running")
    refused = cli("runs", "reply", live, "change course")
    assert refused.returncode == 5, refused.stderr
    assert refused.stderr.startswith("error: Conflict 409") and "cannot be steered" in refused.stderr
    missing = cli("runs", "reply", "no-such-run", "hello")
    assert missing.returncode == 7 and missing.stderr.startswith("error: NotFound 404"), missing.stderr
    empty = cli("runs", "reply", live, "  ")
    assert empty.returncode == 2 and "the message is empty" in empty.stderr


AGENT = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "reply-cli"},
    "spec": {"instructions": "Say hello.", "model": {"name": "claude-sonnet-4-5"}, "tools": ["files"]},
}


def test_reply_in_cluster_mode_creates_the_follow_up_execution(
    plane: ControlPlane,
    kube_client: Client,
    namespace: str,
    tmp_path: Path,
) -> None:
    cli = Cli(tmp_path / "absent.yaml")  # no API configured: cluster mode needs none
    k = ("--kubeconfig", str(plane.kubeconfig), "-n", namespace)
    assert cli(*k, "agents", "apply", "-f", "-", stdin=yaml.safe_dump(AGENT)).returncode == 0
    first = cli(*k, "runs", "submit", "reply-cli", "--input", "Monday", "-o", "json")
    assert first.returncode == 0, first.stderr
    parent = json.loads(first.stdout)["metadata"]["name"]

    early = cli(*k, "runs", "reply", parent, "and Friday?")  # not finished yet: refused, nothing made
    assert early.returncode == 5 and "steering a live run goes through the API" in early.stderr
    pod = pod_of(kube_client, namespace, parent)
    play_kubelet(kube_client, pod, "Running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    eventually(
        lambda: (
            (kube_client.get(Execution, parent, namespace=namespace).status or {}).get("phase") == "Succeeded"
        ),
        what="the parent to succeed",
    )
    set_checkpoint(kube_client, namespace, parent, CHECKPOINT)

    made = cli(*k, "runs", "reply", parent, "and Friday?")
    assert made.returncode == 0, made.stderr
    child = made.stdout.strip()
    ex = kube_client.get(Execution, child, namespace=namespace)
    assert ex.spec["parentRef"] == {"name": parent} and ex.spec["agentRef"] == {"name": "reply-cli"}
    assert ex.spec["input"] == "and Friday?" and ex.spec["trigger"] == "Manual"
    assert {x.metadata.name for x in kube_client.list(Execution, namespace=namespace)} == {parent, child}
    shown = cli(*k, "runs", "get", parent)
    assert shown.returncode == 0, shown.stderr
    assert any(line.split()[:2] == ["continuation", child] for line in shown.stdout.splitlines()), (
        shown.stdout
    )
