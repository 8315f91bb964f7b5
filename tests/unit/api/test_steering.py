"""Steering's pure parts in the API and the CLI: the message body, why a live run cannot be steered,
the refusals that must be 422s (never a 500), and the CLI's one-line answer.

Against the real API, operator and gateway: tests/integration/api/test_steering.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from agentry_api.schemas.steering import MessageOrInterrupt
from agentry_api.services.errors import Conflict, Invalid
from agentry_api.services.steering import Steering
from agentry_api.settings import Settings
from agentry_cli.commands.runs import sent
from agentry_common.models import Runtime
from agentry_common.steering import MAX_TEXT_CHARS

pytestmark = pytest.mark.unit


def steering(gateway: str | None = "http://gw:8090", agent: dict[str, Any] | None = None) -> Steering:
    store = SimpleNamespace(owned_agent=lambda *_: _done(agent))
    runs: Any = SimpleNamespace(store=store)
    return Steering(runs, Settings(namespace="team-a", gateway_url=gateway, google_cloud_project="p"))


async def _done(value: Any) -> Any:
    return value


def doc(phase: str = "Running") -> dict[str, Any]:
    return {"id": "r1", "phase": phase, "agentId": "a", "uid": "u-1"}


def test_the_body_takes_a_message_an_interrupt_or_both() -> None:
    assert MessageOrInterrupt.model_validate({"message": "and Friday?"}).interrupt is False
    assert MessageOrInterrupt.model_validate({"interrupt": True}).message == ""
    for bad in ({}, {"message": "  "}, {"message": "x", "by": "someone"}, {"interrupt": "maybe"}):
        with pytest.raises(ValidationError):
            MessageOrInterrupt.model_validate(bad)


@pytest.mark.parametrize(
    ("gateway", "runtime", "phase", "says"),
    [
        (None, Runtime.AGENTRY, "Running", "needs the LLM gateway"),
        ("http://gw", Runtime.CLAUDE_CODE, "Running", "runtime claude-code"),
        ("http://gw", Runtime.AGENTRY, "WaitingApproval", "approve or deny it first"),
    ],
)
def test_a_live_run_that_cannot_be_steered_says_why(
    gateway: str | None, runtime: Runtime, phase: str, says: str
) -> None:
    problem = steering(gateway).refusal(doc(phase), runtime)
    assert problem is not None and says in problem and "'r1'" in problem
    assert steering().refusal(doc("Pending"), Runtime.AGENTRY) is None


def test_too_long_or_secret_looking_messages_are_422s_naming_the_field() -> None:
    user: Any = SimpleNamespace(id="ada")
    for text in ("x" * (MAX_TEXT_CHARS + 1), "use sk-ant-" + "a" * 30):
        with pytest.raises(Invalid) as raised:
            asyncio.run(steering().send(user, doc(), text, False))
        assert raised.value.loc == ["body", "message"]
    claude = {"spec": {"runtime": "claude-code"}}
    with pytest.raises(Conflict, match="claude-code"):
        asyncio.run(steering(agent=claude).send(user, doc(), "hello", False))


def test_the_cli_says_what_happened_to_the_message() -> None:
    queued = {"delivery": "steered", "message": {"state": "queued", "interrupt": False}, "superseded": [1, 2]}
    assert sent("r1", queued) == "queued; delivered at the next turn (replaces 2 queued)"
    stop = {"delivery": "steered", "message": {"state": "queued", "interrupt": True}}
    assert sent("r1", stop) == "interrupt queued; delivered at the next turn"
    assert sent("r1", {"id": "r1-x7k2p", "phase": "Pending"}) == "r1-x7k2p"  # a follow-up: its name
