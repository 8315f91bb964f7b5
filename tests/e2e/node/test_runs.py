"""Agents run in real pods: kubectl → Execution → the operator's Job → the workspace image under Pod
Security "restricted" → the result, tokens and cost in the Execution's status (and in the API)."""

from __future__ import annotations

import base64
import os
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentry_common.pricing import cost
from agentry_localcluster import node as n
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import eventually, patient

from .stack import ANTHROPIC_KEY, MODEL, NodeStack, agent_spec, api_get, unique

pytestmark = pytest.mark.e2e

PROBE = (
    "id -u; "
    "getent hosts kubernetes.default.svc.cluster.local; "
    "touch /probe 2>/dev/null && echo rootfs-writable || echo rootfs-read-only; "
    # The provider key, looked for in every process' environment and the writable places and mounts
    # (the pattern is assembled here so that this command's own text, kept in the transcript, can't
    # match it).
    "k=sk-ant-; k=${k}e2e-node; "
    'echo key-files=$(grep -rls -- "$k" /proc/[0-9]*/environ /etc /tmp /workspace /run /var/run | wc -l); '
    "echo done-probing"
)


def _job_pods(stack: NodeStack, execution: str) -> list[dict[str, Any]]:
    return stack.items("pods", "-l", f"agentry.dev/execution={execution}")


def _tick_logs(agent: str) -> str:
    """The tick containers' logs, read on the node (the Job controller deletes failed tick pods)."""
    logs = sorted((n.NODE_ROOT / "pod-logs").glob(f"*_agentry-{agent}-*/tick/*.log"))
    return "".join(f"\n--- {p}\n" + "\n".join(p.read_text().splitlines()[-15:]) for p in logs[-2:])


def test_agent_runs_in_a_real_pod_to_success(node_stack: NodeStack, llm: ScriptedLLM) -> None:
    llm.script(
        [
            {
                "tool_use": {"name": "shell", "input": {"command": PROBE}},
                "usage": {"input_tokens": 1000, "output_tokens": 50},
            },
            {"text": "Probed the sandbox: all good.", "usage": {"input_tokens": 1200, "output_tokens": 80}},
        ]
    )
    agent = unique("probe")
    node_stack.apply_agent(agent, agent_spec())
    execution = node_stack.run(agent, "Probe your sandbox.")

    done = node_stack.wait_phase(execution, ("Succeeded", "Failed"))
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"]["summary"] == "Probed the sandbox: all good."
    assert status["usage"]["inputTokens"] == 2200 and status["usage"]["outputTokens"] == 130
    assert Decimal(status["usage"]["costUSD"]) == cost(MODEL, 2200, 130) > 0
    assert status["usage"]["model"] == MODEL

    # The tool ran inside the container: as uid 10001, on a read-only root filesystem, and the
    # cluster DNS resolved the kubernetes Service (CoreDNS + kube-proxy work from a run pod).
    assert len(llm.requests) == 2
    tool_result = str(llm.requests[1].body["messages"][-1])
    assert "10001" in tool_result and "rootfs-read-only" in tool_result, tool_result
    assert "10.96.0.1" in tool_result and "done-probing" in tool_result, tool_result
    # No provider key anywhere in the run's pod; the provider got it from the gateway, which alone
    # holds it, while the run called the gateway with its own short-lived token.
    assert "key-files=0" in tool_result, tool_result
    headers = {k.lower(): v for k, v in llm.requests[0].headers.items()}
    bearer = headers.get("authorization", "").removeprefix("Bearer ")
    assert ANTHROPIC_KEY in (headers.get("x-api-key"), bearer)

    # The pod was admitted under Pod Security "restricted" and ran on the local node.
    namespace = node_stack.cluster.plane.kubectl("get", "namespace", node_stack.namespace, "-o", "json")
    assert '"pod-security.kubernetes.io/enforce": "restricted"' in namespace.stdout
    # The run ends with its container's exit; the kubelet may write the pod's phase a sync later.
    pods = eventually(
        lambda: (
            (found := _job_pods(node_stack, execution))
            and found[0]["status"]["phase"] == "Succeeded"
            and found
        ),
        30,
        "the run's pod Succeeded",
    )
    assert len(pods) == 1
    pod = pods[0]
    assert pod["spec"]["nodeName"] == n.NODE_NAME
    container = pod["status"]["containerStatuses"][0]
    assert container["state"]["terminated"]["exitCode"] == 0
    assert container["image"].endswith("agentry/workspace:dev")
    env = {e["name"]: e for e in pod["spec"]["containers"][0].get("env", [])}
    token_secret = f"{status['jobName']}-token"
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY"):
        assert env[var]["valueFrom"]["secretKeyRef"]["name"] == token_secret, env[var]
    assert env["ANTHROPIC_BASE_URL"]["value"].startswith("http://agentry-gateway."), env["ANTHROPIC_BASE_URL"]
    secrets = [s["metadata"]["name"] for s in node_stack.items("secrets")]
    assert token_secret in secrets and "llm-keys" not in secrets, secrets
    token = base64.b64decode(node_stack.get("secret", token_secret)["data"]["token"]).decode()
    assert token.startswith("agt1.") and ANTHROPIC_KEY not in token


def test_the_pods_together_weigh_what_a_kubelet_gives_kubepods(node_stack: NodeStack) -> None:
    """The node's cgroup root weighs the node's CPUs (1024 shares each, as `kubepods` on a real node),
    not one host process (the default): else the control plane and the emulator crowd out the pods."""
    root = Path("/sys/fs/cgroup/cpu") / n.CGROUP_ROOT
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():  # cgroup v2: the kubelet's own weights
        assert (Path("/sys/fs/cgroup") / n.CGROUP_ROOT).is_dir()
        return
    assert int((root / "cpu.shares").read_text()) == 1024 * (os.cpu_count() or 1)
    assert any(root.rglob("kubepods*")), "no pod cgroup under the node's root"


def test_execution_is_visible_through_the_api(node_stack: NodeStack, llm: ScriptedLLM) -> None:
    llm.script([{"text": "Seen by the API.", "usage": {"input_tokens": 300, "output_tokens": 20}}])
    agent = unique("api")
    node_stack.apply_agent(agent, agent_spec())
    execution = node_stack.run(agent, "Say something.")
    node_stack.wait_phase(execution, ("Succeeded",))

    deadline = time.monotonic() + patient(60)
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:  # the API mirrors CR status into Firestore as it watches
        response = api_get(node_stack, f"/api/executions/{execution}")
        if response.status_code == 200:
            body = response.json()
            if body.get("phase") == "Succeeded":
                break
        time.sleep(1)
    assert body.get("phase") == "Succeeded", f"API: {body or response.text}"
    assert body["result"]["summary"] == "Seen by the API."
    assert body["usage"]["inputTokens"] == 300
    logs = api_get(node_stack, f"/api/executions/{execution}/logs")
    assert logs.status_code == 200, logs.text
    assert "Seen by the API." in logs.text  # the run's events, from the pod log or stored events
    # The gateway metered the run's one call, attributed to this Execution, and the API shows it.
    calls = api_get(node_stack, f"/api/executions/{execution}/calls")
    assert calls.status_code == 200, calls.text
    (call,) = calls.json()["items"]
    assert (call["outcome"], call["model"], call["channel"]) == ("ok", MODEL, "anthropic"), call
    assert (call["inputTokens"], call["outputTokens"]) == (300, 20)
    assert Decimal(call["costUSD"]) == Decimal(body["usage"]["costUSD"]) > 0, (call, body["usage"])


def test_provider_errors_past_the_retries_fail_the_run(node_stack: NodeStack, llm: ScriptedLLM) -> None:
    llm.script([{"error": {"status": 529, "message": "overloaded (scripted)"}, "repeat": 20}])
    agent = unique("overloaded")
    # Its own model: the storm opens the gateway's breaker for this channel and model (which every
    # run shares, as it should), and the other tests here must not meet it.
    node_stack.apply_agent(agent, agent_spec(model={"provider": "anthropic", "name": "claude-haiku-4-5"}))
    execution = node_stack.run(agent, "Try.")

    status = node_stack.wait_phase(execution, ("Succeeded", "Failed"))["status"]
    assert status["phase"] == "Failed", status
    assert status["reason"] == "ProvidersFailed", status
    assert "every LLM provider failed" in status["message"], status["message"]
    # The provider's status reaches the run; its words stay in the gateway's log and call record
    # (error bodies carry no upstream or internal text, docs/security.md).
    summary = status["result"]["summary"]
    assert "HTTP 529" in summary and "overloaded (scripted)" not in summary, status["result"]
    # Bounded: the runtime's three attempts, each tried at most twice by the gateway, and the gateway's
    # breaker opens after five failures; then the Job is failed at once: no pod retry.
    assert 3 <= len(llm.requests) <= 5, [r.path for r in llm.requests]
    assert len(_job_pods(node_stack, execution)) == 1


def test_timeout_fails_the_run_and_stops_its_pod(node_stack: NodeStack, llm: ScriptedLLM) -> None:
    llm.script([{"text": "too late", "delay": 90}])
    agent = unique("slow")
    node_stack.apply_agent(agent, agent_spec(timeoutSeconds=10))
    execution = node_stack.run(agent, "Take your time.")

    status = node_stack.wait_phase(execution, ("Succeeded", "Failed"), timeout=120)["status"]
    assert status["phase"] == "Failed", status
    assert status["reason"] == "DeadlineExceeded", status
    assert "timeoutSeconds" in status["message"] or "deadline" in status["message"].lower(), status
    pods = _job_pods(node_stack, execution)
    assert pods, "the run's pod is kept (terminated) until the Job's TTL"
    for pod in pods:
        assert pod["status"]["phase"] == "Failed", pod["status"]
        name = str(pod["metadata"]["name"])
        assert node_stack.running_containers(name) == [], f"{name} still has running containers"


def test_scheduled_agent_runs_from_its_cronjob(node_stack: NodeStack, llm: ScriptedLLM) -> None:
    usage = {"input_tokens": 100, "output_tokens": 10}
    llm.script([{"text": "Scheduled hello.", "usage": usage, "repeat": 3}])
    agent = unique("cron")
    node_stack.apply_agent(agent, agent_spec(schedule={"cron": "*/1 * * * *", "timeZone": "UTC"}))
    try:
        deadline = time.monotonic() + patient(150)  # the next minute, then the tick pod
        runs: list[dict[str, Any]] = []
        while not runs and time.monotonic() < deadline:
            runs = node_stack.items("executions", "-l", f"agentry.dev/agent={agent}")
            time.sleep(2)
        assert runs, (
            "the CronJob's tick never created an Execution:\n"
            + node_stack.kubectl("get", "cronjobs,jobs,pods", "-o", "wide", check=False)
            + _tick_logs(agent)
        )
        first = runs[0]
        assert first["spec"]["trigger"] == "Schedule"
        name = str(first["metadata"]["name"])
        status = node_stack.wait_phase(name, ("Succeeded", "Failed"))["status"]
        assert status["phase"] == "Succeeded", status
        assert status["result"]["summary"] == "Scheduled hello."
        # The tick itself was a real pod of the operator image that completed.
        ticks = [
            p
            for p in node_stack.items("pods")
            if p["spec"]["containers"][0]["image"].endswith("agentry/operator:dev")
        ]
        assert any(p["status"]["phase"] == "Succeeded" for p in ticks), ticks
    finally:
        node_stack.kubectl("delete", "agent", agent, "--wait=false", check=False)
