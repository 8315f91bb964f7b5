"""`python -m agentry_workspace` as a real process: an Agent secret the run sets as a named output
(or prints, encoded or not) reaches neither the termination message the operator copies into the
Execution's status (and the next workflow step's input), nor the log, nor result.json."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agentry_common import outputs
from agentry_testing.scripted_llm import ScriptedLLM

from .harness import base_spec, prepare, run_pod

pytestmark = pytest.mark.integration

SECRET = 'team-"token"-7f3a9c1e5b2d'
SECRET_SPEC = {"env": "TEAM_TOKEN", "secretKeyRef": {"name": "team", "key": "token"}}


def test_an_output_set_to_an_agent_secret_leaves_the_pod_redacted(tmp_path: Path) -> None:
    usage = {"input_tokens": 10, "output_tokens": 5}
    with ScriptedLLM() as llm:
        llm.script(
            [
                {
                    "tool_use": {"name": "shell", "input": {"command": 'printf %s "$TEAM_TOKEN"'}},
                    "usage": usage,
                },
                {
                    "tool_use": {"name": "shell", "input": {"command": 'printf %s "$TEAM_TOKEN" | base64'}},
                    "usage": usage,
                },
                {
                    "tool_use": {"name": outputs.TOOL_NAME, "input": {"name": "token", "value": SECRET}},
                    "usage": usage,
                },
                {"text": f"The token is {SECRET}.", "usage": usage},
            ]
        )
        spec = base_spec(secrets=[SECRET_SPEC], approval={"trustCodeWithAccess": True})
        env = {"TEAM_TOKEN": SECRET + "\n", outputs.ENV_OUTPUTS: "token"}
        run = run_pod(tmp_path, prepare(tmp_path, spec, llm_url=llm.url, env=env))

    assert run.code == 0, run.explain()
    assert run.result["outputs"] == {"token": "[REDACTED]"}
    assert run.result["summary"] == "The token is [REDACTED]."
    full = (run.workspace / ".agentry" / "result.json").read_text()
    leaked = run.stdout + run.stderr + run.result_text + full
    for form in (SECRET, SECRET.replace('"', '\\"'), base64.b64encode(SECRET.encode()).decode()):
        assert form not in leaked, form
    printed, encoded = [e["summary"] for e in run.of("tool_result")][:2]
    assert printed == "exit code 0 [REDACTED]" and encoded.startswith("exit code 0 [REDACTED]")
