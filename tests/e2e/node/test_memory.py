"""Memory across runs on real pods (docs/runs.md, "Memory across runs"): the first run of an Agent
with spec.memory.enabled writes a memory through the memory tool (the runtime, its run token, the
gateway's store), the next run of the Agent reads it, the owner sees and edits it on the Agent's page
in Chromium (a kubectl Agent: the admin token's), and the Agent deleted and re-created under the same
name starts with an empty memory."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from agentry_testing.scripted_llm import ScriptedLLM
from tests.e2e.api.test_budget_pages import save
from tests.e2e.api.test_dashboard import browser
from tests.fixtures.helpers import patient

from .stack import NodeStack, agent_spec, api_get, unique

pytestmark = pytest.mark.e2e

__all__ = ["browser"]

MEMORY = {"enabled": True, "maxEntries": 5}


def memory_call(**args: Any) -> dict[str, Any]:
    return {"tool_use": {"name": "memory", "input": args}}


def run_to_end(stack: NodeStack, llm: ScriptedLLM, agent: str, items: list[dict[str, Any]]) -> str:
    """One run answered by `items`; the tool result the model was given last (as text)."""
    llm.reset()
    llm.script(items)
    name = stack.run(agent, "Use your memory.")
    done = stack.wait_phase(name, ("Succeeded", "Failed", "Cancelled"))
    assert done["status"]["phase"] == "Succeeded", json.dumps(done["status"])
    last_user = llm.requests[-1].body["messages"][-1]
    assert last_user["role"] == "user"
    return json.dumps(last_user["content"])


def imported(stack: NodeStack, agent: str) -> dict[str, Any]:
    """The Agent's memory through the API, once the API has imported the kubectl Agent."""
    deadline = time.monotonic() + patient(60)
    while True:
        answer = api_get(stack, f"/api/agents/{agent}/memory")
        if answer.status_code == 200 or time.monotonic() > deadline:
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body
        time.sleep(1)


def edit_in_the_dashboard(stack: NodeStack, browser: Browser, agent: str) -> None:
    """The run's memory on the Agent's page: shown, edited and one entry deleted, as the API says."""
    memory = imported(stack, agent)
    assert [(e["key"], e["value"]) for e in memory["entries"]] == [("favourite.city", "Seoul")]
    assert memory["entries"][0]["updatedBy"].startswith(agent)  # the first run's Execution
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    signed = page.request.post(f"{stack.api_url}/api/session/token", data={"token": stack.admin_token})
    assert signed.ok, signed.text()  # the owner of kubectl's Agents
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{stack.api_url}/agents/{agent}")
    row = page.locator('#memory-entries tr[data-key="favourite.city"]')
    expect(row).to_contain_text("Seoul", timeout=30_000)
    row.get_by_role("button", name="Edit").click()
    page.fill("#memory-form textarea[name=value]", "Busan")
    page.click("#memory-save")
    expect(row).to_contain_text("Busan")
    page.fill("#memory-form input[name=key]", "note")
    page.fill("#memory-form textarea[name=value]", "from the dashboard")
    page.click("#memory-save")
    expect(page.locator("#memory-count")).to_contain_text("2 of at most 5 entries")
    save(page, "agent-memory-node.png")
    page.locator('#memory-entries tr[data-key="note"]').get_by_role("button", name="Delete").click()
    expect(page.locator('#memory-entries tr[data-key="note"]')).to_have_count(0)
    after = imported(stack, agent)
    assert [(e["key"], e["value"]) for e in after["entries"]] == [("favourite.city", "Busan")]
    assert after["entries"][0]["updatedBy"].startswith("user:")
    page.context.close()


def test_a_memory_written_by_one_run_is_read_by_the_next_and_goes_with_the_agent(
    node_stack: NodeStack, llm: ScriptedLLM, browser: Browser
) -> None:
    agent = unique("rememberer")
    node_stack.apply_agent(agent, agent_spec(memory=MEMORY))

    wrote = run_to_end(
        node_stack,
        llm,
        agent,
        [memory_call(action="write", key="favourite.city", value="Seoul"), {"text": "Remembered."}],
    )
    assert "stored favourite.city" in wrote
    tools = {t["name"] for t in llm.requests[0].body["tools"]}
    assert "memory" in tools and "memory tool keeps notes" in json.dumps(llm.requests[0].body["system"])

    read = run_to_end(
        node_stack, llm, agent, [memory_call(action="read", key="favourite.city"), {"text": "Seoul it is."}]
    )
    assert "Seoul" in read and 'is_error": true' not in read
    edit_in_the_dashboard(node_stack, browser, agent)

    # Deleted and re-created under the same name: another Agent (uid), an empty memory.
    node_stack.kubectl("delete", "agent", agent, "--wait=true")
    node_stack.apply_agent(agent, agent_spec(memory=MEMORY))
    fresh = run_to_end(node_stack, llm, agent, [memory_call(action="list"), {"text": "Nothing yet."}])
    assert "the memory is empty (0 entries)" in fresh, fresh
    assert imported(node_stack, agent)["entries"] == []
