"""The Agent's own secrets (spec.secrets from a Kubernetes Secret) are redacted from the events and
the result like provider keys: a tool may print one (it has it in its environment), the model may
repeat it, but neither the pod's log nor the Execution's status carries it. Before this, only
provider keys, the state key and Secret Manager values were redacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentry_common.statesig import ENV_STATE_KEY, SIGNATURE_FIELD, state_verifies
from agentry_workspace import app
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.runner import Runner

from .fakes import FakeProvider, make_config, tool

pytestmark = pytest.mark.unit

CANARY = "canary-7f3a9c1e5b2d"
SHORT = "abc"  # shorter than MIN_REDACTED_LENGTH: ordinary text, never redacted


def test_a_printed_agent_secret_never_reaches_the_events_or_the_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def leaky(self: Runner) -> Outcome:
        # What a tool result and a model's echo would carry.
        self.events.emit("tool_result", summary=f"exit code 0 TOKEN={CANARY} PIN={SHORT}")
        return Outcome(StopReason.END_TURN, f"The token is {CANARY}.")

    monkeypatch.setattr(Runner, "run", leaky)
    ref = {"name": "team-token", "key": "token"}
    cfg = make_config(
        tmp_path,
        {"secrets": [{"env": "TEAM_TOKEN", "secretKeyRef": ref}, {"env": "PIN", "secretKeyRef": ref}]},
        env={"TEAM_TOKEN": CANARY, "PIN": SHORT},
    )
    sink = RecordingSink()
    assert app.execute(cfg, sink) == 0
    assert CANARY not in "\n".join(sink.lines)
    assert CANARY not in cfg.result_file.read_text()
    (event,) = sink.of("tool_result")
    assert event["summary"] == f"exit code 0 TOKEN=[REDACTED] PIN={SHORT}"
    assert json.loads(cfg.result_file.read_text())["summary"] == "The token is [REDACTED]."


def test_a_secret_not_in_spec_secrets_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def plain(self: Runner) -> Outcome:
        return Outcome(StopReason.END_TURN, f"HOME_VALUE={CANARY}")

    monkeypatch.setattr(Runner, "run", plain)
    cfg = make_config(tmp_path, env={"SOME_SETTING": CANARY})
    sink = RecordingSink()
    assert app.execute(cfg, sink) == 0
    assert json.loads(cfg.result_file.read_text())["summary"] == f"HOME_VALUE={CANARY}"


async def test_a_paused_state_holding_an_agent_secret_is_redacted_and_still_verifies(tmp_path: Path) -> None:
    """The state is signed as the event's line carries it (redacted): otherwise a secret anywhere in
    the conversation would make the operator take the runtime's own state for a forgery."""
    key = "state-key-0123456789abcdef"
    ref = {"name": "team-token", "key": "token"}
    cfg = make_config(
        tmp_path,
        {"secrets": [{"env": "TEAM_TOKEN", "secretKeyRef": ref}]},
        env={"TEAM_TOKEN": CANARY, ENV_STATE_KEY: key},
    )
    turn = tool("files", {"operation": "write", "path": "t.txt", "content": CANARY}, id="w1")
    red = tool("shell", {"command": "cat t.txt"}, id="s1")  # RED: the Agent holds a secret
    turn.message.content = [*turn.message.content, *red.message.content]
    sink = RecordingSink(secrets=[CANARY])
    outcome = await Runner(cfg, sink, providers=[FakeProvider([turn])]).run()

    assert outcome.stop_reason is StopReason.APPROVAL_REQUIRED
    (event,) = sink.of("approval_request")
    assert CANARY not in json.dumps(event) and "[REDACTED]" in json.dumps(event["state"])
    assert state_verifies(key, event["state"], event[SIGNATURE_FIELD])
