"""Loading the operator's mounts and an author's agent.yaml; every failure is a clear exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentry_workspace.app import pod_main
from agentry_workspace.config import ConfigError, load_manifest_file, load_pod_config

pytestmark = pytest.mark.unit

SPEC = {"instructions": "Summarise.", "model": {"provider": "anthropic", "name": "claude-haiku-4-5"}}


def mount(tmp_path: Path, doc: Any, input_text: str | None = "the task") -> dict[str, str]:
    cfg_dir = tmp_path / "etc"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "agent.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    if input_text is not None:
        (cfg_dir / "input.txt").write_text(input_text)
    return {
        "AGENTRY_CONFIG_DIR": str(cfg_dir),
        "AGENTRY_WORKSPACE": str(tmp_path / "ws"),
        "AGENTRY_RESULT_FILE": str(tmp_path / "result"),
        "AGENTRY_EXECUTION": "weekly-28xk2",
        "AGENTRY_CORRELATION_ID": "7f1c",
        "ANTHROPIC_API_KEY": "k" * 20,
    }


def test_operator_mounts_are_read(tmp_path: Path) -> None:
    env = mount(tmp_path, {"metadata": {"name": "weekly", "namespace": "team-a"}, "spec": SPEC})
    env["AGENTRY_DEADLINE_SECONDS"] = "90.5"
    cfg = load_pod_config(env)
    assert (cfg.agent, cfg.namespace, cfg.execution, cfg.correlation_id) == (
        "weekly",
        "team-a",
        "weekly-28xk2",
        "7f1c",
    )
    assert cfg.input_text == "the task" and cfg.deadline_seconds == 90.5
    assert cfg.workspace == (tmp_path / "ws").resolve() and cfg.workspace.is_dir()
    assert cfg.result_file == tmp_path / "result"
    assert cfg.spec.model.name == "claude-haiku-4-5" and cfg.resume is None


def test_deadline_defaults_to_the_spec_timeout(tmp_path: Path) -> None:
    env = mount(tmp_path, {"metadata": {"name": "a"}, "spec": {**SPEC, "timeoutSeconds": 120}}, None)
    cfg = load_pod_config(env)
    assert cfg.deadline_seconds == 120 and cfg.input_text == ""


@pytest.mark.parametrize(
    ("doc", "env_extra", "message"),
    [
        (None, {}, "agent definition not found"),
        ("{not json", {}, "not valid JSON"),
        ({"spec": {"instructions": "x", "model": {}}}, {}, "spec.model.name: Field required"),
        ({"spec": {**SPEC, "tools": ["shell", "shell"]}}, {}, "tools must not repeat"),
        ({"spec": SPEC}, {"AGENTRY_DEADLINE_SECONDS": "soon"}, "AGENTRY_DEADLINE_SECONDS"),
        ({"spec": SPEC}, {"AGENTRY_RETRY_ATTEMPTS": "0"}, "AGENTRY_RETRY_ATTEMPTS"),
        ({"kind": "Execution", "spec": SPEC}, {}, "kind must be Agent"),
    ],
)
def test_config_errors_name_what_is_wrong(
    tmp_path: Path, doc: Any, env_extra: dict[str, str], message: str
) -> None:
    env = mount(tmp_path, doc if doc is not None else {})
    if doc is None:
        (Path(env["AGENTRY_CONFIG_DIR"]) / "agent.json").unlink()
    with pytest.raises(ConfigError, match=message):
        load_pod_config({**env, **env_extra})


def test_a_spec_without_model_takes_agentry_default_model(tmp_path: Path) -> None:
    """In a cluster the operator writes the default into agent.json; a local run may name one."""
    env = mount(tmp_path, {"spec": {"instructions": "x"}})
    cfg = load_pod_config({**env, "AGENTRY_DEFAULT_MODEL": "openai/gpt-4.1-mini"})
    assert cfg.spec.model is None and (cfg.model.provider.value, cfg.model.name) == ("openai", "gpt-4.1-mini")
    with pytest.raises(ConfigError, match=r"spec\.model is not set"):
        _ = load_pod_config(env).model
    with pytest.raises(ConfigError, match=r"AGENTRY_DEFAULT_MODEL: .*unknown provider"):
        _ = load_pod_config({**env, "AGENTRY_DEFAULT_MODEL": "acme/x"}).model
    explicit = load_pod_config({**mount(tmp_path, {"spec": SPEC}), "AGENTRY_DEFAULT_MODEL": "openai/gpt-5"})
    assert explicit.model.name == "claude-haiku-4-5"


def test_pod_main_reports_a_config_error_on_stdout_and_in_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = mount(tmp_path, {"spec": {"instructions": "x"}})
    assert pod_main(env) == 2
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in events] == ["error", "result"]
    assert events[0]["correlationId"] == "7f1c" and events[0]["execution"] == "weekly-28xk2"
    assert "spec.model" in events[0]["message"] and "Traceback" not in err
    result = json.loads((tmp_path / "result").read_text())
    assert result["stopReason"] == "config_error" and "spec.model" in result["summary"]


def test_agent_yaml_may_be_a_whole_manifest_among_other_documents(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: keys}\n---\n"
        "apiVersion: agentry.dev/v1alpha1\nkind: Agent\nmetadata: {name: weekly, namespace: a}\n"
        "spec:\n  instructions: hi\n  model: {name: claude-haiku-4-5}\n  tools: [files]\n"
    )
    name, namespace, spec = load_manifest_file(path)
    assert (name, namespace, spec.tools[0].value) == ("weekly", "a", "files")
    bare = tmp_path / "bare.yaml"
    bare.write_text("instructions: hi\nmodel: {name: m}\n")
    assert load_manifest_file(bare)[2].instructions == "hi"
    with pytest.raises(ConfigError, match="cannot read"):
        load_manifest_file(tmp_path / "missing.yaml")


def test_resume_file_is_validated_and_may_take_state_from_the_workspace(tmp_path: Path) -> None:
    env = mount(tmp_path, {"spec": SPEC})
    resume = Path(env["AGENTRY_CONFIG_DIR"]) / "resume.json"
    resume.write_text(json.dumps({"decision": {"approvalId": "apr-1", "approved": True}}))
    with pytest.raises(ConfigError, match=r"state\.json does not exist"):
        load_pod_config(env)
    state = {
        "execution": "weekly-28xk2",
        "agent": "a",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "pending": {
            "approvalId": "apr-1",
            "toolUse": {"type": "tool_use", "id": "t", "name": "shell", "input": {}},
            "risk": "RED",
            "reason": "r",
        },
    }
    state_dir = tmp_path / "ws" / ".agentry"
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text(json.dumps(state))
    cfg = load_pod_config(env)
    assert cfg.resume is not None and cfg.resume.decision.approved is True
    assert cfg.resume.state.pending.tool_use.name == "shell"
    # A decision through the API has no reason: null (from an older operator) is no reason.
    resume.write_text(json.dumps({"decision": {"approvalId": "apr-1", "approved": True, "reason": None}}))
    cfg = load_pod_config(env)
    assert cfg.resume is not None and cfg.resume.decision.reason == ""
    resume.write_text(json.dumps({"state": state, "decision": {"approved": "maybe"}}))
    with pytest.raises(ConfigError, match="resume"):
        load_pod_config(env)
