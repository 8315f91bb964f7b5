"""Steering live runs on real pods: a message sent through the API while a tool call runs reaches the
model at the run's next turn boundary (and shows `delivered`); an interrupt sent with the CLI ends
the current turn before its next tool call runs, and the run ends Succeeded (`onInterrupt: end`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest

from agentry_localcluster import localhttp
from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .stack import NodeStack, agent_spec, api_get, unique

pytestmark = pytest.mark.e2e
# The first tool call: it must still run while the test sees the model's first answer and the API's
# mirror of the run, then sends its message or starts the CLI (6 s was too short with three tiers on
# two cores: the run had ended before the interrupt was sent).
BUSY = "sleep 20"


def _wait_requests(llm: ScriptedLLM, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + patient(timeout)
    while len(llm.requests) < n:
        assert time.monotonic() < deadline, f"the run made {len(llm.requests)} model requests, not {n}"
        time.sleep(0.1)


def _cli(stack: NodeStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENTRY_API_URL": stack.api_url, "AGENTRY_TOKEN": stack.admin_token}
    cmd = [sys.executable, "-m", "agentry_cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)


def _wait_mirrored(stack: NodeStack, execution: str, phase: str = "Running") -> dict[str, Any]:
    """The API's view of the run once it shows `phase` and knows its Execution's uid."""
    deadline = time.monotonic() + patient(60)
    while True:
        view: dict[str, Any] = api_get(stack, f"/api/executions/{execution}").json()
        if view.get("phase") == phase:
            return view
        assert time.monotonic() < deadline, view
        time.sleep(0.5)


def test_a_message_sent_mid_run_reaches_the_model_at_the_next_turn(
    node_stack: NodeStack, llm: ScriptedLLM
) -> None:
    llm.script(
        [
            {
                "match_last": "Count to two",
                "tool_uses": [{"name": "shell", "input": {"command": f"{BUSY}; echo step-one"}}],
                "usage": {"input_tokens": 100, "output_tokens": 10},
            },
            {"match_last": "Add the weather", "text": "Counted, and the weather is fine.", "keep": True},
            {"match_last": "step-one", "text": "Counted, without the message.", "keep": True},
        ]
    )
    agent = unique("steer")
    node_stack.apply_agent(agent, agent_spec(tools=["shell"], timeoutSeconds=300))
    execution = node_stack.run(agent, "Count to two.")
    _wait_requests(llm, 1)  # the model answered; its tool call sleeps
    _wait_mirrored(node_stack, execution)
    sent = localhttp.post(
        f"{node_stack.api_url}/api/executions/{execution}/messages",
        json={"message": "Add the weather."},
        headers={"Authorization": f"Bearer {node_stack.admin_token}"},
        timeout=30,
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["message"]["state"] == "queued"

    status = node_stack.wait_phase(execution, ("Succeeded", "Failed"), timeout=240)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"]["summary"] == "Counted, and the weather is fine."
    last = llm.requests[-1].body["messages"][-1]
    assert "step-one" in str(last) and "Add the weather." in str(last)  # after the result, same turn
    listed = api_get(node_stack, f"/api/executions/{execution}/messages").json()
    assert [m["state"] for m in listed["messages"]] == ["delivered"], listed


def test_an_interrupt_from_the_cli_ends_the_turn_before_its_next_call(
    node_stack: NodeStack, llm: ScriptedLLM
) -> None:
    llm.script(
        [
            {
                "match_last": "Do the two chores",
                "tool_uses": [
                    {"name": "shell", "input": {"command": f"{BUSY}; echo first >> chores.log"}},
                    {"name": "shell", "input": {"command": "echo second >> chores.log"}},
                ],
                "usage": {"input_tokens": 100, "output_tokens": 10},
            },
            {"text": "This answer is never asked for.", "keep": True},
        ]
    )
    agent = unique("interrupt")
    node_stack.apply_agent(
        agent, agent_spec(tools=["shell"], timeoutSeconds=300, steering={"onInterrupt": "end"})
    )
    execution = node_stack.run(agent, "Do the two chores.")
    _wait_requests(llm, 1)
    _wait_mirrored(node_stack, execution)
    out = _cli(node_stack, "runs", "interrupt", execution)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "interrupt queued; delivered at the next turn"

    status = node_stack.wait_phase(execution, ("Succeeded", "Failed"), timeout=240)["status"]
    assert status["phase"] == "Succeeded", status
    assert status["result"]["stopReason"] == "user_interrupt", status["result"]
    assert len(llm.requests) == 1  # the turn ended: no model call after the interrupt
    listed = api_get(node_stack, f"/api/executions/{execution}/messages").json()
    assert [(m["interrupt"], m["state"]) for m in listed["messages"]] == [(True, "delivered")], listed
