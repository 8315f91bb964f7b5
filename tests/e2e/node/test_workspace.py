"""A kept workspace on real pods (docs/runs.md, "A kept workspace"): the local node's default
StorageClass gives the Agent's claim a volume; a file one run writes, the next run reads; a run that
grows it past spec.workspace.size ends WorkspaceFull; the Agent deleted, its claim, its volume and the
volume's directory on the node are gone."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from agentry_testing.scripted_llm import ScriptedLLM
from tests.fixtures.helpers import patient

from .stack import NodeStack, agent_spec, unique

pytestmark = pytest.mark.e2e

NOTE = "kept-across-runs"


def shell(command: str) -> dict[str, Any]:
    return {"tool_use": {"name": "shell", "input": {"command": command}}}


def run_to_end(stack: NodeStack, llm: ScriptedLLM, agent: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    """One run answered by `items` in order; its Execution once it ended."""
    llm.reset()
    llm.script(items)
    name = stack.run(agent, "Work in your workspace.")
    return stack.wait_phase(name, ("Succeeded", "Failed", "Cancelled"))


def last_tool_result(llm: ScriptedLLM) -> str:
    last_user = llm.requests[-1].body["messages"][-1]
    assert last_user["role"] == "user"
    return json.dumps(last_user["content"])


def gone(stack: NodeStack, kind: str, name: str) -> bool:
    return not stack.kubectl("get", kind, name, "--ignore-not-found", "-o", "name").strip()


def test_a_kept_workspace_outlives_runs_and_goes_with_its_agent(
    node_stack: NodeStack, llm: ScriptedLLM
) -> None:
    agent = unique("desk")
    node_stack.apply_agent(agent, agent_spec(workspace={"persistent": True, "size": "1Mi"}))

    first = run_to_end(
        node_stack,
        llm,
        agent,
        [shell(f"mkdir -p notes && echo {NOTE} > notes/a.txt && id -u && ls -ld ."), {"text": "written"}],
    )
    assert first["status"]["phase"] == "Succeeded", json.dumps(first["status"])
    wrote = last_tool_result(llm)
    assert "10001" in wrote, wrote  # the runtime's own uid, not root, could write it

    second = run_to_end(node_stack, llm, agent, [shell("cat notes/a.txt"), {"text": "read"}])
    assert second["status"]["phase"] == "Succeeded", json.dumps(second["status"])
    assert NOTE in last_tool_result(llm)

    # The claim, bound to a volume of the node's class whose directory holds the note.
    [claim] = node_stack.items(
        "pvc", "-l", f"agentry.dev/agent={agent},app.kubernetes.io/component=workspace"
    )
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "agentry-local"
    assert claim["metadata"]["ownerReferences"][0]["name"] == agent
    volume = claim["spec"]["volumeName"]
    path = Path(json.loads(node_stack.kubectl("get", "pv", volume, "-o", "json"))["spec"]["local"]["path"])
    assert (path / "notes" / "a.txt").read_text().strip() == NOTE

    # Past its size (1Mi): the run ends WorkspaceFull, not retried.
    full = run_to_end(
        node_stack, llm, agent, [shell("head -c 2000000 /dev/zero > big.bin"), {"text": "done"}]
    )
    assert (full["status"]["phase"], full["status"]["reason"]) == ("Failed", "WorkspaceFull"), json.dumps(
        full["status"]
    )

    # The Agent deleted: its claim, the volume and the volume's directory go with it.
    node_stack.kubectl("delete", "agent", agent, "--wait=false")
    deadline = time.monotonic() + patient(120)
    while time.monotonic() < deadline:
        if gone(node_stack, "pvc", claim["metadata"]["name"]) and gone(node_stack, "pv", volume):
            break
        time.sleep(1)
    assert gone(node_stack, "pvc", claim["metadata"]["name"]) and gone(node_stack, "pv", volume)
    assert not path.exists()
