""" "Try it" in the dashboard's chat designer, on the local node: a person describes an agent, the
designer (through the LLM gateway, to the scripted provider) drafts it, the person clicks Try it and
watches the draft run in a real sandbox pod — its status, tool call and result, the result, tokens
and cost appear live in the conversation — without saving it (screenshot docs/screenshots/chat-try.png)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from agentry_testing.scripted_llm import ScriptedLLM
from tests.e2e.api.test_dashboard import browser

from .stack import MODEL, NodeStack

pytestmark = pytest.mark.e2e
__all__ = ["browser"]

SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "screenshots" / "chat-try.png"
DRAFT = {
    "name": "Greeter",
    "description": "Greets from its sandbox",
    "instructions": "Run `echo hello-from-the-sandbox` with the shell tool, then report what it printed.",
    "tools": ["shell"],
    "model": {"provider": "anthropic", "name": MODEL},
    "budget": {"maxTurns": 5, "maxCostPerRunUSD": "0.50"},
}


def test_a_draft_tried_from_the_chat_runs_live_in_the_conversation(
    node_stack: NodeStack, llm: ScriptedLLM, browser: Browser, tmp_path: Path
) -> None:
    llm.script(
        [
            {
                "match": "greets people",
                "text": "Here is a draft:\n```json\n" + json.dumps(DRAFT) + "\n```\nTry it before saving?",
                "usage": {"input_tokens": 300, "output_tokens": 120},
            },
            {
                "match": "Say hello",
                "tool_use": {"name": "shell", "input": {"command": "echo hello-from-the-sandbox"}},
                "usage": {"input_tokens": 900, "output_tokens": 40},
            },
            {
                "match": "hello-from-the-sandbox",
                "text": "The sandbox printed: hello-from-the-sandbox",
                "delay": 10,  # the tool's step must show while the run still thinks
                "usage": {"input_tokens": 1100, "output_tokens": 60},
            },
        ]
    )
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(node_stack.api_url + "/agents/new")  # a guest session on the first visit (make dev)
    page.fill("#chat-form input", "An agent that greets people from its sandbox")
    page.click("#chat-form button")
    expect(page.locator("#chat-log .msg.assistant")).to_contain_text("Here is a draft", timeout=60_000)
    expect(page.locator("#chat-try")).to_be_enabled(timeout=30_000)
    page.fill("#chat-try-input", "Say hello")
    page.click("#chat-try")

    trial = page.locator("#chat-log .msg.trial")
    expect(trial).to_contain_text('Trying "Greeter"', timeout=30_000)
    expect(trial).to_contain_text("Running", timeout=180_000)
    # Live: the tool call and its result show while the run goes on (its pod's log, followed).
    expect(trial.locator(".part.tool_call")).to_contain_text("echo hello-from-the-sandbox", timeout=180_000)
    expect(trial.locator(".part.tool_result")).to_contain_text("hello-from-the-sandbox", timeout=8_000)
    expect(trial.locator(".part.result")).to_have_count(0)
    expect(trial.locator(".part.result")).to_contain_text("hello-from-the-sandbox", timeout=180_000)
    usage = trial.locator(".part.usage")
    expect(usage).to_contain_text("2000 in / 100 out")
    expect(trial).to_contain_text("Succeeded")
    shot = tmp_path / "chat-try.png"
    page.locator("#chat").screenshot(path=str(shot))
    shutil.copy(shot, SCREENSHOT)

    # Not saved: the guest has no agent; the run is theirs (listed, counted), marked as a trial.
    execution = trial.get_attribute("data-execution")
    assert execution
    agents = page.evaluate("fetch('/api/agents').then(r => r.json())")
    assert agents["items"] == [], agents
    run = page.evaluate(f"fetch('/api/executions/{execution}').then(r => r.json())")
    assert run["phase"] == "Succeeded" and run["usage"]["inputTokens"] == 2000, run
    assert node_stack.items("agents", "-l", "agentry.dev/trial=true") == []  # cleaned up
    assert not errors, errors
    context.close()
