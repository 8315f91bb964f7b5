"""Faults on the local node: the kubelet killed while runs are in flight and started again after a
while. Its containers go on under containerd; when it comes back it reports what happened meanwhile,
and every run ends as its pod did, with its result and usage, in its one pod, never restarted."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

KUBELET_DOWN = 25.0  # longer than both runs' remaining work: they end while the kubelet is away


def running(stack: NodeStack, execution: str) -> bool:
    pods = stack.items("pods", "-l", f"agentry.dev/execution={execution}")
    states = [
        (c.get("state") or {}) for p in pods for c in (p.get("status") or {}).get("containerStatuses") or []
    ]
    return any("running" in s for s in states)


def wait_for(what: str, check: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + patient(timeout)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {timeout:.0f} s")
        time.sleep(1)


def test_runs_in_flight_end_as_their_pods_did_across_a_kubelet_restart(
    node_stack: NodeStack, llm: ScriptedLLM
) -> None:
    usage = {"input_tokens": 400, "output_tokens": 30}
    llm.script(
        [
            # alpha: its model call is in flight when the kubelet dies, and answers while it is away.
            {"match": "alpha", "text": "Alpha finished.", "delay": 12, "usage": usage},
            # bravo: a tool runs across the kubelet's absence, then the run ends while it is away.
            {"match": "bravo", "tool_use": {"name": "shell", "input": {"command": "sleep 8; echo slept"}}},
            {"match": "slept", "text": "Bravo finished.", "usage": usage},
        ]
    )
    agent = unique("faults")
    node_stack.apply_agent(agent, agent_spec())
    runs = {"alpha": node_stack.run(agent, "Task alpha."), "bravo": node_stack.run(agent, "Task bravo.")}
    for name in runs.values():
        wait_for(f"{name} running in its pod", lambda n=name: running(node_stack, n))
    node = node_stack.cluster.node
    assert node is not None
    node.restart_kubelet(down=KUBELET_DOWN)

    for label, name in runs.items():
        done = node_stack.wait_phase(name, ("Succeeded", "Failed"), timeout=240)
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert status["result"]["summary"] == f"{label.capitalize()} finished.", status
        assert status["usage"]["inputTokens"] >= 400 and status["usage"]["outputTokens"] >= 30, status
        pods = node_stack.items("pods", "-l", f"agentry.dev/execution={name}")
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]  # no second pod, no retry
        container = pods[0]["status"]["containerStatuses"][0]
        assert container["restartCount"] == 0 and container["state"]["terminated"]["exitCode"] == 0
        assert len(node_stack.items("jobs", "-l", f"agentry.dev/execution={name}")) == 1
