"""Everything that leaves a run passes one redaction step: the result (termination message, the
`result` event, <workspace>/.agentry/result.json) is redacted as a whole, field by field, and so is
every event. Found by an outsider: an output (`spec.outputs`) set to an Agent secret reached the
Execution's status raw, while the same value in the summary was redacted.

The first test enumerates the result's fields by their types and plants the secret in every string
they can hold: a field added later is redacted, or this test fails (or names a type it cannot fill)."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from agentry_common import outputs
from agentry_operator.builders.execution_status import observe, status_patch
from agentry_workspace import app
from agentry_workspace.config import FULL_RESULT_FILE, RunConfig
from agentry_workspace.events import RecordingSink
from agentry_workspace.outcome import Outcome, StopReason
from agentry_workspace.runner import Runner

from .fakes import FakeProvider, make_config, text, tool

pytestmark = pytest.mark.unit

CANARY = "canary-7f3a9c1e5b2d"
REF = {"name": "team-token", "key": "token"}
SECRET_SPEC = {"secrets": [{"env": "TEAM_TOKEN", "secretKeyRef": REF}]}
NO_TEXT = object()  # a type that holds no string (int, bool, our own enums)


def plant(hint: Any) -> Any:
    """A value of type `hint` with the secret in every string it can hold (dict keys included)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is str:
        return f"before {CANARY} after"
    if hint is Any:
        return {"text": plant(str), CANARY: [plant(str), {"deep": plant(str)}], "n": 1}
    if origin in (typing.Union, types.UnionType):
        return plant(next(a for a in args if a is not type(None)))
    if origin is dict:
        key = f"key-{CANARY}" if args[0] is str else NO_TEXT
        return {key: plant(args[1])}
    if origin in (list, tuple, set, frozenset):
        return [plant(args[0])]
    if hint in (int, float, bool) or (isinstance(hint, type) and issubclass(hint, Enum)):
        return NO_TEXT
    raise AssertionError(f"no rule to plant a secret in {hint!r}: teach plant() and redact the field")


def planted_outcome() -> tuple[Outcome, list[str]]:
    """An Outcome with the secret in every field that holds text; and those fields' names."""
    outcome = Outcome(StopReason.END_TURN, "")
    hints = typing.get_type_hints(Outcome)
    filled = []
    for f in dataclasses.fields(Outcome):
        value = plant(hints[f.name])
        if value is not NO_TEXT:
            setattr(outcome, f.name, value)
            filled.append(f.name)
    return outcome, filled


def run_returning(monkeypatch: pytest.MonkeyPatch, outcome: Outcome) -> None:
    async def run(self: Runner) -> Outcome:
        return outcome

    monkeypatch.setattr(Runner, "run", run)


def test_every_field_of_the_result_is_redacted_wherever_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome, filled = planted_outcome()
    assert {"summary", "usage", "approval", "mcp", "outputs"} <= set(filled)  # the enumeration works
    run_returning(monkeypatch, outcome)
    cfg = make_config(tmp_path, SECRET_SPEC, env={"TEAM_TOKEN": CANARY})
    sink = RecordingSink()
    app.execute(cfg, sink)

    termination = cfg.result_file.read_text()
    full_text = (cfg.state_dir / FULL_RESULT_FILE).read_text()
    (event_line,) = [line for line in sink.lines if '"type": "result"' in line]
    for where, written in [("termination", termination), ("result.json", full_text), ("event", event_line)]:
        assert CANARY not in written, where
    full = json.loads(full_text)
    for name in filled:  # each field was carried out of the run, redacted
        wire = name if name in full else "".join(w.title() if i else w for i, w in enumerate(name.split("_")))
        assert "[REDACTED]" in json.dumps(full[wire]), name


def test_the_runs_outcome_is_not_changed_by_redacting_what_leaves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report is a redacted copy: the Outcome the runner handed over keeps its values."""
    outcome = Outcome(StopReason.END_TURN, f"s {CANARY}", outputs={"headline": CANARY})
    run_returning(monkeypatch, outcome)
    cfg = make_config(tmp_path, SECRET_SPEC, env={"TEAM_TOKEN": CANARY})
    app.execute(cfg, RecordingSink())
    assert outcome.outputs == {"headline": CANARY}


def runner_with(monkeypatch: pytest.MonkeyPatch, script: list[Any]) -> FakeProvider:
    provider = FakeProvider(script)

    def build(cfg: RunConfig, sink: RecordingSink) -> Runner:
        return Runner(cfg, sink, providers=[provider])

    monkeypatch.setattr(app, "Runner", build)
    return provider


def pod_of(termination: str, asked: str) -> dict[str, Any]:
    """The pod the operator reads: its termination message and the outputs it was asked for."""
    return {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"},
        "spec": {"containers": [{"env": [{"name": outputs.ENV_OUTPUTS, "value": asked}]}]},
        "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0, "message": termination}}}]},
    }


def test_an_output_set_to_an_agent_secret_is_redacted_in_the_executions_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reported case: set_output(headline = the secret's value), then the operator's status."""
    runner_with(
        monkeypatch,
        [tool("set_output", {"name": "headline", "value": CANARY}, id="o1"), text(f"Set to {CANARY}.")],
    )
    env = {"TEAM_TOKEN": CANARY, outputs.ENV_OUTPUTS: "headline"}
    cfg = make_config(tmp_path, SECRET_SPEC, env=env)
    sink = RecordingSink()
    assert app.execute(cfg, sink) == 0

    termination = cfg.result_file.read_text()
    assert json.loads(termination)["outputs"] == {"headline": "[REDACTED]"}
    job = {"status": {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1}}
    seen = observe(job, [pod_of(termination, "headline")])
    status = status_patch({}, seen, 1, "2026-01-01T00:01:00Z").patch()
    assert status["result"]["outputs"] == {"headline": "[REDACTED]"}  # what the next step would read
    assert status["result"]["summary"] == "Set to [REDACTED]."
    assert CANARY not in json.dumps(status) and CANARY not in "\n".join(sink.lines)


def test_an_output_set_to_a_secret_with_a_trailing_newline_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`echo token | kubectl create secret ...` leaves a newline in the value; the model repeats it
    without one. The value is redacted however it is printed."""
    runner_with(monkeypatch, [tool("set_output", {"name": "headline", "value": CANARY}), text("Done.")])
    env = {"TEAM_TOKEN": CANARY + "\n", outputs.ENV_OUTPUTS: "headline"}
    cfg = make_config(tmp_path, SECRET_SPEC, env=env)
    app.execute(cfg, RecordingSink())
    assert json.loads(cfg.result_file.read_text())["outputs"] == {"headline": "[REDACTED]"}


def test_an_internal_errors_traceback_on_stderr_is_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """stderr is the pod's log too (kubectl logs): the runtime's own diagnostics are redacted."""

    async def boom(self: Runner) -> Outcome:
        raise RuntimeError(f"boom {CANARY}")

    monkeypatch.setattr(Runner, "run", boom)
    cfg = make_config(tmp_path, SECRET_SPEC, env={"TEAM_TOKEN": CANARY})
    sink = RecordingSink()
    assert app.execute(cfg, sink) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: boom [REDACTED]" in err and CANARY not in err
    assert CANARY not in "\n".join(sink.lines) + cfg.result_file.read_text()
