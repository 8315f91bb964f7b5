"""`agentry` against the real API (emulator, control plane, operator): agents, runs with --wait and
their exit codes, approvals, logs -f through a dropped connection, usage, budgets, errors."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml
from lightkube import Client
from prometheus_client import REGISTRY

from agentry_common.resources import Agent, Execution
from tests.fixtures.helpers import eventually, patient, play_kubelet
from tests.integration.api.helpers import (
    REPORT,
    create_agent,
    pod_of,
    request_approval,
    run,
    wait_api_phase,
)
from tests.integration.api.server import ApiServer, TcpProxy

from .conftest import Cli

pytestmark = [pytest.mark.integration, pytest.mark.long]

MANIFEST = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "cli-hello"},
    "spec": {"instructions": "Say hello.", "model": {"name": "claude-sonnet-4-5"}, "tools": ["files"]},
}


def newest_run(user: httpx.Client, agent_id: str) -> str:
    def find() -> str | None:
        items = user.get("/api/executions", params={"agent": agent_id}).json()["items"]
        return str(items[0]["id"]) if items else None

    name: str = eventually(find, 30, f"a run of {agent_id}")
    return name


def ended(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=patient(timeout))
    return proc.returncode, out, err


def test_agents_apply_list_get(
    cli: Cli, user: httpx.Client, tmp_path: Path, kube_client: Client, namespace: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(MANIFEST))
    done = cli("agents", "apply", "-f", str(path), "-o", "json")
    assert done.returncode == 0, done.stderr
    [created] = json.loads(done.stdout)["items"]
    assert created["action"] == "created" and created["name"] == "cli-hello"
    assert kube_client.get(Agent, created["id"], namespace=namespace).spec["instructions"] == "Say hello."

    MANIFEST["spec"]["instructions"] = "Say hello twice."  # type: ignore[index]
    path.write_text(yaml.safe_dump(MANIFEST))
    again = cli("agents", "apply", "-f", str(path), "-o", "json")
    assert json.loads(again.stdout)["items"] == [{**created, "action": "updated"}], again.stderr
    assert user.get(f"/api/agents/{created['id']}").json()["spec"]["instructions"] == "Say hello twice."

    listed = json.loads(cli("agents", "list", "-o", "json").stdout)["items"]
    assert [a["id"] for a in listed] == [created["id"]]
    table = cli("agents", "list")
    assert table.returncode == 0 and "cli-hello" in table.stdout and "SOURCE" in table.stdout
    shown = yaml.safe_load(cli("agents", "get", "cli-hello", "-o", "yaml").stdout)  # by name
    assert shown["id"] == created["id"] and shown["source"] == "api"

    bad = {**MANIFEST, "spec": {**MANIFEST["spec"], "tools": ["teleport"]}}  # type: ignore[dict-item]
    refused = cli("agents", "apply", "-f", "-", stdin=yaml.safe_dump(bad))
    assert refused.returncode == 5, refused.stderr
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith("error: Invalid 422: spec.tools") and "[correlation " in line


def test_submit_wait_exits_0_when_the_run_succeeds(
    cli: Cli, user: httpx.Client, kube_client: Client, namespace: str
) -> None:
    agent = create_agent(user)
    proc = cli.spawn("runs", "submit", agent["name"], "--input", "today", "--wait", "-o", "json")
    name = newest_run(user, agent["id"])
    # The API records the run before it creates the Execution: wait for the resource too.
    run = eventually(lambda: kube_client.get(Execution, name, namespace=namespace), what=f"Execution {name}")
    assert run.spec["input"] == "today"
    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Running")
    wait_api_phase(user, name, "Running")
    play_kubelet(kube_client, pod, "Succeeded", 0, REPORT)
    code, out, err = ended(proc)
    assert code == 0, err
    final = json.loads(out)
    assert final["id"] == name and final["phase"] == "Succeeded"
    assert final["result"]["summary"] == "All quiet." and final["usage"]["inputTokens"] == 1200
    assert f"run {name} accepted" in err and "phase=Running" in err and "phase=Succeeded" in err
    # Each event line carries its own event's time, not the run's creation time.
    times = {phase: at for at, phase in re.findall(r"^(\S+) \S+ phase=(\w+)", err, re.MULTILINE)}
    assert final["createdAt"] < times["Running"] < times["Succeeded"], err

    shown = cli("runs", "list", "-o", "json")
    assert [r["id"] for r in json.loads(shown.stdout)["items"]] == [name]
    assert "Succeeded" in cli("runs", "list").stdout
    assert json.loads(cli("runs", "get", name, "-o", "json").stdout)["phase"] == "Succeeded"


def test_submit_input_from_stdin_timeout_and_cancel(
    cli: Cli, user: httpx.Client, kube_client: Client, namespace: str
) -> None:
    agent = create_agent(user)
    accepted = cli("runs", "submit", agent["id"], "--input", "-", "-o", "json", stdin="from a pipe\n")
    assert accepted.returncode == 0, accepted.stderr
    first = json.loads(accepted.stdout)["execution"]
    assert kube_client.get(Execution, first, namespace=namespace).spec["input"] == "from a pipe\n"

    # Nobody plays the kubelet: the run stays Pending and --wait gives up with TIMEOUT. The timeout
    # also bounds the submit's acceptance, which took over 3 s on a loaded machine: 10 s leaves room.
    slow = cli("runs", "submit", agent["id"], "--wait", "--timeout", "10")
    assert slow.returncode == 4 and "is not over after 10 s" in slow.stderr

    known = {r["id"] for r in user.get("/api/executions").json()["items"]}
    proc = cli.spawn("runs", "submit", agent["id"], "--wait")
    name = eventually(lambda: newest_run(user, agent["id"]) not in known and newest_run(user, agent["id"]))
    pod_of(kube_client, namespace, name)
    stopped = cli("runs", "cancel", name, "-o", "json")
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["id"] == name
    code, out, err = ended(proc)
    assert code == 1, err
    assert "Cancelled" in out


def test_waiting_for_approval_exits_3_then_approve(
    cli: Cli, user: httpx.Client, kube_client: Client, namespace: str
) -> None:
    agent = create_agent(user)
    proc = cli.spawn("runs", "submit", agent["id"], "--wait")
    name = newest_run(user, agent["id"])
    request_approval(kube_client, namespace, name, "ap-cli-1")
    code, _out, err = ended(proc)
    assert code == 3, err
    assert "agentry approve ap-cli-1" in err and "approval ap-cli-1 requested" in err

    pending = json.loads(cli("approvals", "list", "-o", "json").stdout)["items"]
    assert [(a["id"], a["state"], a["execution"]) for a in pending] == [("ap-cli-1", "pending", name)]
    assert "rm -rf /workspace/cache" in cli("approvals", "list").stdout
    done = cli("approve", "ap-cli-1", "--reason", "looks fine", "-o", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "accepted", done.stderr
    again = cli("deny", "ap-cli-1")
    assert again.returncode == 5 and again.stderr.startswith("error: Conflict 409"), again.stderr
    decided = json.loads(cli("approvals", "list", "--state", "approved", "-o", "json").stdout)["items"]
    assert decided[0]["decidedBy"] and decided[0]["reason"] == "looks fine"


def run_reads() -> float:
    """GET /api/executions/{name} answered 200 by the in-process API (a process-wide counter)."""
    labels = {"route": "/api/executions/{name}", "method": "GET", "status": "200"}
    return REGISTRY.get_sample_value("agentry_api_requests_total", labels) or 0.0


def test_logs_follow_resumes_after_a_dropped_connection(
    api: ApiServer, cli: Cli, user: httpx.Client, kube_client: Client, namespace: str
) -> None:
    agent = create_agent(user)
    name = run(user, agent["id"])["execution"]
    pod = pod_of(kube_client, namespace, name)
    play_kubelet(kube_client, pod, "Running")
    wait_api_phase(user, name, "Running")
    proxy = TcpProxy("127.0.0.1", int(api.url.rsplit(":", 1)[1]))
    proxy.start()
    try:
        reads = run_reads()
        proc = cli.spawn("--api-url", f"http://127.0.0.1:{proxy.port}", "logs", name, "-f")
        eventually(lambda: api.state.sse_open == 1, 60, "the CLI's event stream to open")
        # The CLI subscribes, then reads the run's state: cut only after that read was answered, or
        # the cut tests the read's retry (which then sees the run over) instead of the stream's resume.
        eventually(lambda: run_reads() > reads, 60, "the CLI's read of the run")
        time.sleep(1)  # the answer crosses the proxy
        proxy.stop()  # the stream is cut, and reconnecting is refused for now
        # While it is away: the run asks for an approval, a human denies it, the run ends Cancelled.
        request_approval(kube_client, namespace, name, "ap-cli-2")
        wait_api_phase(user, name, "WaitingApproval")
        assert user.post("/api/approvals/ap-cli-2/decision", json={"approved": False}).status_code == 202
        wait_api_phase(user, name, "Cancelled")
        time.sleep(1)  # at least one refused reconnect
        proxy.start()
        code, out, err = ended(proc, 90)
    finally:
        proxy.close()
    assert code == 1, err
    assert "resuming after event" in err
    # Replayed from Last-Event-ID, not a fresh snapshot: the events of the outage are all there.
    assert "approval ap-cli-2 requested" in out and "approval ap-cli-2 decided" in out, out
    assert "phase=WaitingApproval" in out and "phase=Cancelled" in out.strip().splitlines()[-1], out
    assert "phase=Running" in out  # what the log showed before following


def test_errors_are_one_line_with_a_documented_exit_code(api: ApiServer, cli: Cli) -> None:
    missing = cli("runs", "get", "no-such-run")
    assert missing.returncode == 7 and missing.stderr.startswith("error: NotFound 404"), missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert cli("runs", "submit", "no-such-agent").returncode == 7
    wrong = cli("--token", "agt_not-a-real-token", "runs", "list")
    assert wrong.returncode == 6 and wrong.stderr.startswith("error: Unauthorized 401"), wrong.stderr
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        down = cli("--api-url", f"http://127.0.0.1:{held.getsockname()[1]}", "runs", "list")
    assert down.returncode == 9 and down.stderr.startswith("error: Unavailable"), down.stderr
    assert "agt_not-a-real-token" not in wrong.stderr + wrong.stdout


def test_usage_and_budgets_without_a_gateway(cli: Cli, user: httpx.Client) -> None:
    usage = cli("usage", "--window", "24h", "-o", "json")
    assert usage.returncode == 0 and json.loads(usage.stdout)["window"] == "24h", usage.stderr
    shown = cli("usage").stdout
    assert shown.startswith("since ") and "read from the cache saved $" in shown
    budgets = json.loads(cli("budgets", "-o", "json").stdout)
    assert budgets["governed"] is False and budgets["limits"] == []
    assert "AGENTRY_GATEWAY_URL" in budgets["note"]
    assert user.get("/api/budgets").json()["governed"] is False
