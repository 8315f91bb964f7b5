"""An Agent using the reference MCP server's tools runs in a pod: server-everything, installed in the
workspace image, started over stdio inside the run's sandbox; its tools offered to the (scripted) model
and called, under Pod Security "restricted", with no provider key or run token in the server's
environment; what the run discovered recorded in the Execution's and the Agent's status."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from agentry_testing.scripted_llm import ScriptedLLM

from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

SERVER = {
    "name": "everything",
    "command": ["mcp-server-everything", "stdio"],
    "env": [{"name": "GREETING", "value": "from-the-agent"}],
    "tools": ["echo", "get-sum", "get-env"],
}


def _uses(*calls: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    blocks = [{"type": "tool_use", "id": i, "name": name, "input": args} for i, name, args in calls]
    return {"content": blocks, "usage": {"input_tokens": 500, "output_tokens": 40}}


def _results(body: dict[str, Any]) -> dict[str, str]:
    return {
        b["tool_use_id"]: b["content"] if isinstance(b["content"], str) else json.dumps(b["content"])
        for b in body["messages"][-1]["content"]
        if b.get("type") == "tool_result"
    }


def _run_everything(node_stack: NodeStack, llm: ScriptedLLM, agent: str) -> dict[str, Any]:
    llm.script(
        [
            _uses(
                ("e1", "mcp__everything__echo", {"message": "hello from a pod"}),
                ("e2", "mcp__everything__get-sum", {"a": 19, "b": 23}),
                ("e3", "mcp__everything__get-env", {}),
            ),
            {"text": "The MCP server answered.", "usage": {"input_tokens": 600, "output_tokens": 20}},
        ]
    )
    node_stack.apply_agent(agent, agent_spec(tools=["files"], mcpServers=[SERVER]))
    execution = node_stack.run(agent, "Use the MCP server.")
    done = node_stack.wait_phase(execution, ("Succeeded", "Failed"))
    assert done["status"]["phase"] == "Succeeded", done["status"]
    return done


def test_an_agent_uses_the_reference_mcp_server_in_a_pod(node_stack: NodeStack, llm: ScriptedLLM) -> None:
    agent = unique("mcp")
    done = _run_everything(node_stack, llm, agent)
    assert done["status"]["result"]["summary"] == "The MCP server answered."

    # The model was offered exactly the allow-listed tools, with the server's own schemas.
    assert len(llm.requests) == 2
    offered = {t["name"]: t for t in llm.requests[0].body["tools"]}
    assert sorted(n for n in offered if n.startswith("mcp__")) == [
        "mcp__everything__echo",
        "mcp__everything__get-env",
        "mcp__everything__get-sum",
    ]
    assert "message" in offered["mcp__everything__echo"]["input_schema"]["properties"]

    # Each call went to the server inside the pod and its answer came back to the model.
    results = _results(llm.requests[1].body)
    assert "Echo: hello from a pod" in results["e1"], results
    assert "42" in results["e2"], results
    # The server saw its own variable, and neither the run token (it stands in for the provider key
    # in the run's pod) nor the state key.
    env = results["e3"]
    assert "from-the-agent" in env, env
    assert "agt1." not in env and "ANTHROPIC" not in env and "AGENTRY_STATE_KEY" not in env, env

    # The pod's log carries the discovery (kubectl logs), with each tool's risk from its annotations.
    (pod,) = node_stack.items("pods", "-l", f"agentry.dev/execution={done['metadata']['name']}")
    logs = node_stack.kubectl("logs", pod["metadata"]["name"])
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    (found,) = [e for e in events if e["type"] == "mcp_servers"]
    assert found["servers"] == [
        {"name": "everything", "tools": {"echo": "GREEN", "get-env": "GREEN", "get-sum": "GREEN"}}
    ]


def test_the_agent_status_shows_the_discovered_tools(node_stack: NodeStack, llm: ScriptedLLM) -> None:
    agent = unique("mcp-status")
    done = _run_everything(node_stack, llm, agent)
    name = done["metadata"]["name"]
    tools = {"echo": "GREEN", "get-env": "GREEN", "get-sum": "GREEN"}
    assert done["status"].get("mcp") == {"servers": [{"name": "everything", "tools": tools}]}, done["status"]
    status: dict[str, Any] = {}
    for _ in range(60):  # the operator refreshes the Agent's status after the run's
        status = node_stack.get("agent", agent).get("status") or {}
        if (status.get("mcp") or {}).get("execution") == name:
            break
        time.sleep(1)
    assert status.get("mcp") == {"execution": name, "servers": [{"name": "everything", "tools": tools}]}, (
        status
    )
