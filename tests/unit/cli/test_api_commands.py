"""The API commands' pure parts: configuration precedence and file mode, exit codes, error lines,
manifests, the event stream's parsing, and which events end a wait."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import pytest

from agentry_cli import config
from agentry_cli.client import Api, ApiError, error_of
from agentry_cli.commands.agents import agent_body
from agentry_cli.commands.logs import new_lines
from agentry_cli.exits import ExitCode, for_phase, for_status
from agentry_cli.main import main
from agentry_cli.output import Format, dump
from agentry_cli.session import InputError
from agentry_cli.settings import Settings, get_settings
from agentry_cli.stream import Event, backoff, parse
from agentry_cli.watch import event_line, run_view, stops

pytestmark = pytest.mark.unit

FILE = {"url": "http://file:1", "token": "agt_file"}
UNSET = Settings(api_url=None, token=None)  # explicit: whatever the test's own environment says


def test_flags_beat_the_environment_which_beats_the_file() -> None:
    env = Settings(api_url="http://env:2/", token="agt_env")
    assert config.resolve("http://flag:3", "agt_flag", env, FILE) == config.Target(
        "http://flag:3", "agt_flag"
    )
    assert config.resolve(None, None, env, FILE) == config.Target("http://env:2", "agt_env")
    assert config.resolve(None, None, UNSET, FILE) == config.Target("http://file:1", "agt_file")


@pytest.mark.parametrize(
    ("url", "token", "says"),
    [(None, "t", "no API URL"), ("http://x", None, "no API token"), ("ftp://x", "t", "http(s)")],
)
def test_missing_or_bad_settings_say_what_to_do(url: str | None, token: str | None, says: str) -> None:
    with pytest.raises(config.ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")):
        config.resolve(url, token, UNSET, {})


def test_written_file_is_0600_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "config.yaml"
    config.write(path, "https://agentry.example/", "agt_secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config.read_file(path) == {"url": "https://agentry.example", "token": "agt_secret"}
    path.chmod(0o644)  # an existing file opened wider is narrowed again by the next write
    config.write(path, "https://agentry.example", "agt_other")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("url: http://x\ntoken: agt_x\n")
    os.chmod(path, 0o640)
    with pytest.raises(config.ConfigError, match="chmod 600"):
        config.read_file(path)


def test_config_path_follows_agentry_config_then_xdg(tmp_path: Path) -> None:
    both = Settings(config=str(tmp_path / "c.yaml"), xdg_config_home=str(tmp_path / "x"))
    assert config.config_path(both) == tmp_path / "c.yaml"
    xdg = Settings(config=None, xdg_config_home=str(tmp_path))
    assert config.config_path(xdg) == tmp_path / "agentry" / "config.yaml"


def test_settings_read_the_documented_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(config.ENV_URL, "http://env:2")
    monkeypatch.setenv(config.ENV_TOKEN, "agt_env")
    monkeypatch.setenv(config.ENV_CONFIG, str(tmp_path / "c.yaml"))
    monkeypatch.setenv("AGENTRY_GATEWAY_URL", "http://gw:1")
    monkeypatch.setenv("KUBECONFIG", "/k/config")
    env = get_settings()
    assert (env.api_url, env.token, env.gateway_url, env.kubeconfig) == (
        "http://env:2",
        "agt_env",
        "http://gw:1",
        "/k/config",
    )
    assert config.config_path() == tmp_path / "c.yaml"
    monkeypatch.setenv(config.ENV_URL, "http://later:3")  # read at each call, not cached
    assert get_settings().api_url == "http://later:3"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ExitCode.UNAUTHORIZED),
        (403, ExitCode.UNAUTHORIZED),
        (404, ExitCode.NOT_FOUND),
        (409, ExitCode.REFUSED),
        (422, ExitCode.REFUSED),
        (429, ExitCode.OVER_QUOTA),
        (503, ExitCode.UNAVAILABLE),
    ],
)
def test_http_statuses_map_to_exit_codes(status: int, code: ExitCode) -> None:
    assert for_status(status) is code


@pytest.mark.parametrize(
    ("phase", "code"),
    [
        ("Succeeded", ExitCode.OK),
        ("Failed", ExitCode.FAILED),
        ("Cancelled", ExitCode.FAILED),
        ("Skipped", ExitCode.FAILED),
        ("WaitingApproval", ExitCode.WAITING_APPROVAL),
        ("Running", ExitCode.TIMEOUT),
    ],
)
def test_phases_map_to_exit_codes(phase: str, code: ExitCode) -> None:
    assert for_phase(phase) is code


def test_exit_codes_are_distinct() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


def test_an_error_body_becomes_one_line_with_reason_and_correlation() -> None:
    body = {
        "reason": "Invalid",
        "detail": [{"loc": ["body", "spec", "tools", 0], "msg": "bad tool"}],
        "correlationId": "req-1",
    }
    err = error_of(httpx.Response(422, json=body))
    assert err.one_line() == "error: Invalid 422: spec.tools.0: bad tool [correlation req-1]"
    assert err.exit_code is ExitCode.REFUSED
    plain = error_of(httpx.Response(502, text="<html>\nbad gateway</html>"))
    assert plain.exit_code is ExitCode.UNAVAILABLE and "\n" not in plain.one_line()


def test_agent_manifests_and_api_bodies_are_both_accepted() -> None:
    manifest = {
        "apiVersion": "agentry.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "hello"},
        "spec": {"instructions": "Say hello."},
    }
    assert agent_body(manifest, "f") == {"name": "hello", "spec": {"instructions": "Say hello."}}
    assert agent_body({"name": "x", "spec": {"instructions": "y"}}, "f")["name"] == "x"
    with pytest.raises(InputError, match="kind must be Agent"):
        agent_body({**manifest, "kind": "Execution"}, "f")
    with pytest.raises(InputError, match=r"metadata\.name"):
        agent_body({"kind": "Agent", "spec": {}}, "f")
    with pytest.raises(InputError, match="spec must be a mapping"):
        agent_body({"name": "x", "spec": "no"}, "f")


def test_sse_messages_parse_and_odd_ones_are_skipped() -> None:
    assert parse("report", "7", json.dumps({"kind": "execution"})) == Event(
        "report", 7, {"kind": "execution"}
    )
    assert parse("report", "", "[1]") is None and parse("report", "1", "not json") is None
    assert parse("", "x", "{}") == Event("message", None, {})
    assert [backoff(n) for n in (0, 1, 2, 99)] == [0.0, 0.5, 1.0, 8.0]


def test_which_events_are_about_the_run_and_which_end_a_wait() -> None:
    report = Event("report", 3, {"kind": "execution", "execution": "r1", "id": "r1", "phase": "Running"})
    other = Event("report", 4, {"kind": "execution", "execution": "r2", "id": "r2", "phase": "Failed"})
    snap = Event("snapshot", 2, {"executions": [{"id": "r1", "phase": "Pending"}]})
    assert run_view(report, "r1") is not None and run_view(other, "r1") is None
    assert run_view(snap, "r1") == {"id": "r1", "phase": "Pending"}
    assert stops("Succeeded", False) and stops("WaitingApproval", True)
    assert not stops("WaitingApproval", False) and not stops("Running", True) and not stops(None, True)


def test_an_event_line_shows_the_events_own_time_not_the_runs_creation() -> None:
    created = "2026-11-26T10:00:00.000000Z"
    report = {"action": "status", "phase": "Running", "createdAt": created, "updatedAt": "x"}
    assert event_line({**report, "eventTime": "2026-11-26T10:00:07.5Z"}) == (
        "2026-11-26T10:00:07.5Z status phase=Running"
    )
    # A snapshot's view has no event time: the run's last change, never its creation.
    snapshot = {
        "phase": "Failed",
        "reason": "Timeout",
        "createdAt": created,
        "updatedAt": "2026-11-26T10:09Z",
    }
    assert event_line(snapshot) == "2026-11-26T10:09Z status phase=Failed reason=Timeout"
    assert event_line({"phase": "Pending", "createdAt": created}) == "status phase=Pending"


def test_followed_pod_logs_print_only_what_is_new() -> None:
    assert new_lines(["a", "b"], ["a", "b", "c"]) == ["c"]
    assert new_lines(["x"], ["a", "b"]) == ["a", "b"]  # another pod (a retry): all of it


def test_yaml_and_json_outputs_are_the_objects() -> None:
    data = {"items": [{"id": "a", "phase": "Running"}]}
    assert json.loads(dump(data, Format.JSON)) == data
    assert "- id: a" in dump(data, Format.YAML)


def test_no_configuration_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(config.ENV_URL, raising=False)
    monkeypatch.delenv(config.ENV_TOKEN, raising=False)
    monkeypatch.setenv(config.ENV_CONFIG, str(tmp_path / "absent.yaml"))
    assert main(["runs", "list"]) == ExitCode.USAGE
    assert "agentry login" in capsys.readouterr().err


def test_completion_is_offered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--install-completion" in capsys.readouterr().out


def test_cluster_mode_builds_a_manual_execution_and_reads_crs_as_rows() -> None:
    from agentry_cli.cluster import agent_row, execution_manifest, run_row

    made = execution_manifest("hello", "hi")
    assert made["metadata"] == {"generateName": "hello-"} and made["kind"] == "Execution"
    assert made["spec"]["agentRef"] == {"name": "hello"} and made["spec"]["trigger"] == "Manual"
    assert made["spec"]["input"] == "hi" and len(made["spec"]["correlationId"]) == 32
    assert "input" not in execution_manifest("hello", None)["spec"]
    agent = {
        "metadata": {"name": "a"},
        "spec": {"schedule": {"cron": "0 8 * * 1"}},
        "status": {"model": "anthropic/m", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    row = agent_row(agent)
    assert (row["id"], row["status"]["ready"], row["spec"]["schedule"]["cron"]) == ("a", "True", "0 8 * * 1")
    ex = {"metadata": {"name": "a-1", "creationTimestamp": "t"}, "spec": {"agentRef": {"name": "a"}}}
    assert run_row(ex)["phase"] == "Pending" and run_row(ex)["agentId"] == "a"


def test_the_report_that_ended_a_wait_wins_over_a_stale_read() -> None:
    from agentry_cli.commands.runs import latest

    stored = {"id": "r", "phase": "Running", "result": None, "input": "hi"}
    reported = {"id": "r", "phase": "Cancelled", "result": {"summary": "stop"}, "kind": "execution", "seq": 9}
    assert latest(stored, reported) == {
        "id": "r",
        "phase": "Cancelled",
        "result": {"summary": "stop"},
        "input": "hi",
    }
    assert latest(stored, None) is stored and latest(stored, {"phase": "Running"}) is stored


def flaky(failures: list[type[httpx.TransportError]]) -> tuple[Api, list[str]]:
    """An Api whose first requests fail with `failures` (in order), then answer {"ok": true}."""
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if len(seen) <= len(failures):
            raise failures[len(seen) - 1]("cut", request=request)
        return httpx.Response(200, json={"ok": True})

    return Api(config.Target("http://api.test", "t"), transport=httpx.MockTransport(handle)), seen


def test_a_read_survives_a_dropped_connection_a_write_only_a_refused_one() -> None:
    api, seen = flaky([httpx.RemoteProtocolError, httpx.ReadError])
    assert api.get("/api/agents") == {"ok": True} and seen == ["GET"] * 3

    api, seen = flaky([httpx.RemoteProtocolError])  # the POST may have been applied: not sent again
    with pytest.raises(ApiError, match="RemoteProtocolError") as raised:
        api.post("/api/agents/a/runs")
    assert raised.value.exit_code is ExitCode.UNAVAILABLE and seen == ["POST"]

    api, seen = flaky([httpx.ConnectError])  # never reached the server: safe to send again
    assert api.post("/api/agents/a/runs") == {"ok": True} and seen == ["POST", "POST"]

    api, seen = flaky([httpx.ReadError] * 3)  # three attempts, then the error
    with pytest.raises(ApiError, match="cannot reach the API"):
        api.get("/api/agents")
    assert seen == ["GET"] * 3
