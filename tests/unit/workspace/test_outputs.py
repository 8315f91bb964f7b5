"""Named outputs (`set_output`): offered only when the run is asked for outputs, only those names,
bounded, kept across an approval pause, and reported in the result and the termination message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentry_common import outputs
from agentry_workspace.config import ConfigError
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, termination_message
from agentry_workspace.runner import Runner
from agentry_workspace.state import Decision, ResumeRequest, RunState

from .fakes import FakeProvider, make_config, text, tool

pytestmark = pytest.mark.unit
ASKED = {outputs.ENV_OUTPUTS: "headline,sources"}


async def run_agent(cfg: Any, provider: FakeProvider) -> tuple[Outcome, RecordingSink]:
    sink = RecordingSink()
    return await Runner(cfg, sink, providers=[provider]).run(), sink


async def test_set_output_records_only_the_names_asked_for(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, env=ASKED)
    provider = FakeProvider(
        [
            tool("set_output", {"name": "headline", "value": "Fabs expand"}, id="o1"),
            tool("set_output", {"name": "secret", "value": "x"}, id="o2"),
            tool("set_output", {"name": "sources", "value": "x" * 5000}, id="o3"),
            text("Done."),
        ]
    )
    outcome, _ = await run_agent(cfg, provider)
    assert outcome.outputs == {"headline": "Fabs expand", "sources": "x" * outputs.MAX_VALUE_BYTES}
    first = provider.requests[0]
    offered = {t.name: t for t in first.tools}
    assert offered["set_output"].input_schema["properties"]["name"]["enum"] == ["headline", "sources"]
    assert "record each of these named outputs with set_output: headline, sources" in first.system_text()
    results = [m for m in provider.requests[2].messages if m.role == "user"][-1].content
    assert results[0].is_error and "unknown output 'secret'" in results[0].content
    message = json.loads(termination_message(outcome))
    assert message["outputs"]["headline"] == "Fabs expand"


async def test_without_outputs_asked_there_is_no_set_output_tool(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    provider = FakeProvider([text("Done.")])
    outcome, _ = await run_agent(cfg, provider)
    assert "set_output" not in {t.name for t in provider.requests[0].tools} and outcome.outputs == {}


async def test_outputs_set_before_an_approval_pause_survive_the_resume(tmp_path: Path) -> None:
    spec = {"approval": {"redTools": ["shell"]}}
    cfg = make_config(tmp_path, spec, env=ASKED)
    turn = tool("set_output", {"name": "headline", "value": "Before the pause"}, id="o1")
    turn.message.content = [
        *turn.message.content,
        *tool("shell", {"command": "true"}, id="sh").message.content,
    ]
    first, sink = await run_agent(cfg, FakeProvider([turn]))
    state = RunState.model_validate(sink.of("approval_request")[0]["state"])
    assert state.outputs == {"headline": "Before the pause"} and first.outputs == {
        "headline": "Before the pause"
    }
    decision = Decision(approval_id=state.pending.approval_id, approved=True)
    resumed = make_config(tmp_path, spec, env=ASKED, resume=ResumeRequest(state=state, decision=decision))
    outcome, _ = await run_agent(resumed, FakeProvider([text("Done.")]))
    assert outcome.outputs == {"headline": "Before the pause"}


def test_bad_output_names_are_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=outputs.ENV_OUTPUTS):
        make_config(tmp_path, env={outputs.ENV_OUTPUTS: "ok,not-ok"})
