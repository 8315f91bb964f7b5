"""Runs under gVisor on the local node: an Agent with `runtimeClassName: gvisor` runs in runsc's sandbox
(the node registers the RuntimeClass; agentry_localcluster/gvisor.py), with everything a run pod needs
(the read-only root, the emptyDirs, the downward-API inputs, the termination message, the pod network
through gVisor's own network stack, cluster DNS). The sandbox suite's main run holds there too
(test_sandbox_suite.py, `[gvisor]`, but for its GVISOR_GAPS): the egress proxy, the NetworkPolicy and
every refusal."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_localcluster.gvisor import RUNTIME_CLASS
from agentry_testing.scripted_llm import ScriptedLLM

from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

PROBE = (
    # gVisor's kernel answers for itself: its own version string and boot messages.
    "cat /proc/version; dmesg 2>/dev/null | head -n 2; id -u; "
    "touch /probe 2>/dev/null && echo rootfs-writable || echo rootfs-read-only; "
    "echo w > /workspace/probe && cat /workspace/probe && echo workspace-writable; "
    "getent hosts kubernetes.default.svc.cluster.local; echo done-probing"
)


def _pods(stack: NodeStack, execution: str) -> list[dict[str, Any]]:
    return stack.items("pods", "-l", f"agentry.dev/execution={execution}")


def test_the_node_registers_the_gvisor_runtime_class(node_stack: NodeStack) -> None:
    rc = node_stack.cluster.plane.kubectl("get", "runtimeclass", RUNTIME_CLASS, "-o", "jsonpath={.handler}")
    assert rc.returncode == 0 and rc.stdout == "runsc", rc.stderr


def test_a_run_under_gvisor_runs_in_runscs_sandbox_to_success(
    node_stack: NodeStack, llm: ScriptedLLM
) -> None:
    llm.script(
        [
            {"tool_use": {"name": "shell", "input": {"command": PROBE}}},
            {"text": "Probed the sandbox under gVisor."},
        ]
    )
    agent = unique("gvisor")
    node_stack.apply_agent(agent, agent_spec(runtimeClassName=RUNTIME_CLASS))
    execution = node_stack.run(agent, "Probe your sandbox.")
    done = node_stack.wait_phase(execution, ("Succeeded", "Failed"), timeout=240)
    status = done["status"]
    # The result came back through the termination message; the inputs were read from the
    # downward-API volume (the runtime cannot start without them).
    assert status["phase"] == "Succeeded", status
    assert status["result"]["summary"] == "Probed the sandbox under gVisor."
    (pod,) = _pods(node_stack, execution)
    assert pod["spec"]["runtimeClassName"] == RUNTIME_CLASS
    tool_result = str(llm.requests[1].body["messages"][-1])
    assert "gVisor" in tool_result, tool_result  # dmesg: "Starting gVisor..."
    assert "10001" in tool_result and "rootfs-read-only" in tool_result, tool_result
    assert "workspace-writable" in tool_result and "10.96.0.1" in tool_result, tool_result
    # The model was called through the gateway Service over the pod network.
    assert len(llm.requests) == 2
