"""Pure builders and rules of the operator, without a cluster."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from agentry_common import constants as c
from agentry_common.exitcodes import FINAL
from agentry_common.models import Archived, HistoryLimits, Phase
from agentry_operator.builders.agent_status import archive, spec_errors, summarize, to_prune
from agentry_operator.builders.cronjob import build_cronjob
from agentry_operator.builders.execution_status import format_duration, observe, status_patch
from agentry_operator.builders.job import build_job
from agentry_operator.conditions import set_condition
from agentry_operator.schedule import next_run
from agentry_operator.settings import Settings
from agentry_operator.tick import build_execution, scheduled_time

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]

AGENT = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "news", "namespace": "ns", "uid": "a-uid"},
    "spec": {
        "instructions": "x",
        "model": {"name": "m"},
        "retries": 2,
        "timeoutSeconds": 600,
        "secrets": [{"env": "ANTHROPIC_API_KEY", "secretKeyRef": {"name": "keys", "key": "anthropic"}}],
        "schedule": {"cron": "0 8 * * 1", "timeZone": "Asia/Seoul"},
    },
}
EXECUTION = {
    "apiVersion": "agentry.dev/v1alpha1",
    "kind": "Execution",
    "metadata": {"name": "run", "namespace": "ns", "uid": "e-uid"},
    "spec": {"agentRef": {"name": "news"}, "trigger": "Manual"},
}


def test_job_is_restricted_bounded_and_never_holds_secret_values() -> None:
    job = build_job(EXECUTION, AGENT, "corr", Settings())
    pod = job["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctr["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert ctr["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["automountServiceAccountToken"] is False
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["activeDeadlineSeconds"] == 630
    secret = next(e for e in ctr["env"] if e["name"] == "ANTHROPIC_API_KEY")
    assert secret == {
        "name": "ANTHROPIC_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "keys", "key": "anthropic"}},
    }
    final = job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
    assert set(final) == {int(x) for x in FINAL}
    assert job["metadata"]["ownerReferences"][0]["uid"] == "e-uid"


def test_cronjob_carries_time_zone_and_only_creates_executions() -> None:
    cj = build_cronjob(AGENT, Settings())
    assert cj["spec"]["timeZone"] == "Asia/Seoul" and cj["spec"]["schedule"] == "0 8 * * 1"
    ctr = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert ctr["command"] == ["python", "-m", "agentry_operator.tick"]
    assert len(cj["metadata"]["name"]) <= 52


def test_tick_names_execution_by_scheduled_minute() -> None:
    when = scheduled_time("agentry-news-abc123-29000000")
    assert when == dt.datetime.fromtimestamp(29000000 * 60, dt.UTC)
    a = build_execution("news", "ns", when)
    assert a == build_execution("news", "ns", when)  # a retried tick makes the same object
    assert a["spec"]["trigger"] == "Schedule"


def test_next_run_uses_the_agent_time_zone() -> None:
    monday_utc = next_run("0 8 * * 1", "Asia/Seoul", dt.datetime(2026, 11, 23, 0, 30, tzinfo=dt.UTC))
    assert monday_utc == dt.datetime(2026, 11, 29, 23, 0, tzinfo=dt.UTC)  # 08:00 KST next Monday


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"schedule": {"cron": "61 * * * *"}}, "spec.schedule.cron"),
        ({"schedule": {"cron": "0 8 * * 1", "timeZone": "Mars/Olympus"}}, "spec.schedule.timeZone"),
        ({"schedule": {"cron": "@daily"}}, None),
    ],
)
def test_spec_errors(spec: dict[str, Any], expected: str | None) -> None:
    errors = spec_errors({"instructions": "x", "model": {"name": "m"}, **spec})
    assert (expected in "; ".join(errors)) if expected else errors == []


def _job(conds: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
    return {
        "spec": {"activeDeadlineSeconds": 60},
        "status": {"conditions": conds, "startTime": "2026-01-01T00:00:00Z", **status},
    }


def _pod(exit_code: int, message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:01Z"},
        "status": {
            "containerStatuses": [{"state": {"terminated": {"exitCode": exit_code, "message": message}}}]
        },
    }


def test_observe_deadline_and_backoff_and_approval() -> None:
    failed = [
        {
            "type": "Failed",
            "status": "True",
            "reason": "DeadlineExceeded",
            "lastTransitionTime": "2026-01-01T00:01:00Z",
        }
    ]
    seen = observe(_job(failed), [])
    assert (seen.phase, seen.reason) == (Phase.FAILED, "DeadlineExceeded")
    assert "60 s" in seen.message

    backoff = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
    seen = observe(_job(backoff, failed=3), [_pod(137)])
    assert seen.reason == "OOMKilled" and "3 attempt" in seen.message

    policy = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]
    report = '{"stopReason": "approval_required", "approval": {"id": "ap1", "tool": "shell"}}'
    seen = observe(_job(policy), [_pod(30, report)])
    assert seen.phase == Phase.WAITING_APPROVAL and seen.approval is not None
    assert seen.approval.patch() == {"id": "ap1", "tool": "shell", "summary": ""}


def test_a_failed_runs_message_carries_the_runtimes_own_reason() -> None:
    policy = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]
    why = "Stopped: all providers failed: anthropic/m: HTTP 503: channel 'anthropic' has no API key"
    report = json.dumps({"stopReason": "providers_failed", "summary": f"{why}\nmore lines" + "x" * 500})
    seen = observe(_job(policy), [_pod(20, report)])
    assert seen.reason == "ProvidersFailed"
    assert seen.message == f"every LLM provider failed after retries and fallbacks (exit code 20): {why}"
    long = json.dumps({"summary": "y" * 1000})
    message = observe(_job(policy), [_pod(20, long)]).message
    assert message.endswith("y…") and len(message) < 400


def test_a_runs_named_outputs_are_kept_only_when_asked_for_and_bounded() -> None:
    done = [{"type": "Complete", "status": "True"}]
    given = {"headline": "H", "forged": "F", "links": "L" * 5000}
    pod = _pod(0, json.dumps({"stopReason": "end_turn", "summary": "S", "outputs": given}))
    pod["spec"] = {
        "containers": [
            {
                "env": [
                    {"name": "AGENTRY_OUTPUTS", "value": "headline,links"},
                    {"name": "AGENTRY_OUTPUTS", "value": "forged"},  # an Agent's secret of the name
                ]
            }
        ]
    }
    result = observe(_job(done, succeeded=1), [pod]).result
    assert result is not None and result.outputs == {"headline": "H", "links": "L" * 1024}
    del pod["spec"]
    result = observe(_job(done, succeeded=1), [pod]).result
    assert result is not None and "outputs" not in result.patch()  # asked for nothing: nothing kept


def test_status_patch_keeps_transition_time_when_status_unchanged() -> None:
    seen = observe(
        _job([{"type": "Complete", "status": "True"}], completionTime="2026-01-01T00:01:05Z"),
        [_pod(0, '{"summary": "ok"}')],
    )
    first = status_patch({}, seen, 1, "2026-01-01T00:01:06Z").patch()
    assert first["duration"] == "1m5s" and first["result"]["summary"] == "ok"
    again = status_patch(first, seen, 1, "2026-01-01T09:00:00Z").patch()
    assert again["conditions"] == first["conditions"]


def test_set_condition_moves_time_only_on_change() -> None:
    a = set_condition(None, "Ready", True, "R", now="t1")
    b = set_condition(a, "Ready", True, "R2", "m", now="t2")
    c = set_condition(b, "Ready", False, "R3", now="t3")
    assert b[0]["lastTransitionTime"] == "t1" and b[0]["reason"] == "R2"
    assert c[0]["lastTransitionTime"] == "t3" and c[0]["status"] == "False"


def _ex(name: str, phase: str, created: str, tokens: int = 10) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"agentRef": {"name": "news"}},
        "status": {"phase": phase, "usage": {"inputTokens": tokens, "outputTokens": 1, "costUSD": "0.5"}},
    }


def test_history_pruning_and_archive_count_each_execution_once() -> None:
    exes = [_ex(f"s{i}", "Succeeded", f"2026-01-0{i}") for i in range(1, 5)]
    exes += [_ex("f1", "Failed", "2026-01-05")]
    pruned = to_prune(exes, HistoryLimits(succeeded=2, failed=1))
    assert [e["metadata"]["name"] for e in pruned] == ["s1", "s2"]
    archived = archive(Archived(), pruned)
    assert archived.names == ["s1", "s2"] and archived.executions == 2 and archived.cost_usd == "1"
    assert archive(archived, pruned) == archived  # a retried prune counts nothing twice
    live = [e for e in exes if e not in pruned]
    totals = summarize(live, archived).patch()["totals"]
    assert totals["executions"] == 5 and totals["inputTokens"] == 50
    assert totals["costUSD"] == "2.5" and totals["failed"] == 1


def test_a_workflows_steps_are_not_pruned_by_their_agents_history_limits() -> None:
    steps = [_ex(f"r-s{i}-1", "Succeeded", f"2026-01-0{i}") for i in range(1, 5)]
    for ex in steps:
        ex["metadata"]["ownerReferences"] = [{"kind": "WorkflowRun", "name": "r", "uid": "u"}]
    own = [_ex(f"o{i}", "Succeeded", f"2026-01-0{i}") for i in range(5, 9)]
    pruned = to_prune(steps + own, HistoryLimits(succeeded=2, failed=1))
    assert [e["metadata"]["name"] for e in pruned] == ["o5", "o6"]


def test_format_duration() -> None:
    assert format_duration("2026-01-01T00:00:00Z", "2026-01-01T01:02:03Z") == "1h2m3s"
    assert format_duration(None, "2026-01-01T00:00:00Z") is None


async def test_undecided_approval_times_out_and_denial_cancels() -> None:
    from agentry_operator.handlers.approval import on_waiting
    from agentry_operator.handlers.state import State
    from agentry_operator.settings import Settings as Cfg

    body: dict[str, Any] = {
        **EXECUTION,
        "spec": {**EXECUTION["spec"], "approvals": []},
        "status": {
            "phase": "WaitingApproval",
            "approval": {"id": "apr-1", "tool": "shell", "expiresAt": "2000-01-01T00:00:00Z"},
        },
    }
    outcome = await on_waiting(None, Cfg(), State(), body, None)  # type: ignore[arg-type]
    assert outcome is not None and outcome[:2] == (Phase.CANCELLED, "ApprovalTimedOut")

    body["status"]["approval"]["expiresAt"] = "2999-01-01T00:00:00Z"
    assert await on_waiting(None, Cfg(), State(), body, None) is None  # type: ignore[arg-type]
    body["spec"]["approvals"] = [{"id": "apr-1", "approved": False, "decidedBy": "bob"}]
    outcome = await on_waiting(None, Cfg(), State(), body, None)  # type: ignore[arg-type]
    assert outcome == (Phase.CANCELLED, "ApprovalDenied", "bob denied shell", None)


def test_resume_job_mounts_resume_json_beside_the_inputs() -> None:
    job = build_job(EXECUTION, AGENT, "corr", Settings(), name="run-resume", resume_configmap="cm")
    sources = job["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert [i["path"] for i in sources[0]["downwardAPI"]["items"]] == ["agent.json", "input.txt"]
    assert sources[1]["configMap"] == {"name": "cm", "items": [{"key": "resume.json", "path": "resume.json"}]}
    assert job["metadata"]["name"] == "run-resume"


def test_only_a_missing_secret_fails_a_run_at_once() -> None:
    from agentry_operator.builders.execution_status import observe_pod

    def pod(message: str) -> dict[str, Any]:
        return {
            "metadata": {},
            "status": {
                "containerStatuses": [
                    {"state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}}}
                ]
            },
        }

    missing = observe_pod(pod('secret "llm-keys" not found'))
    assert missing is not None and missing.reason == "ContainerConfigError" and missing.stop_job
    assert observe_pod(pod("failed to sync secret cache: timed out waiting for the condition")) is None


def test_tick_builds_an_execution_of_the_generic_resource() -> None:
    import agentry_operator.tick as tick

    manifest = tick.build_execution("news", "ns", scheduled_time("agentry-news-abc123-29000000"))
    obj = tick.Execution.from_dict(manifest)
    assert obj.spec["trigger"] == "Schedule" and obj.metadata is not None


def test_a_secret_never_shadows_what_the_platform_sets() -> None:
    ref = {"secretKeyRef": {"name": "s", "key": "k"}}
    names = ["HOME", "AGENTRY_EXECUTION", "AGENTRY_GATEWAY_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "LD_PRELOAD"]
    names += ["HTTPS_PROXY", "MY_TOKEN"]
    agent = {**AGENT, "spec": {**AGENT["spec"], "secrets": [{"env": n, **ref} for n in names]}}
    config = Settings(egress_proxy_url="http://proxy:3128")
    env = build_job(EXECUTION, agent, "corr", config)["spec"]["template"]["spec"]["containers"][0]["env"]
    from_secrets = [e["name"] for e in env if "valueFrom" in e]
    assert from_secrets == ["MY_TOKEN"]
    by_name = {e["name"]: e.get("value") for e in env}
    assert by_name["HOME"] == "/workspace" and by_name["AGENTRY_EXECUTION"] == "run"
    assert by_name["HTTPS_PROXY"] == "http://proxy:3128"
    assert len(by_name) == len(env)  # one entry per name: nothing for the kubelet to override


def test_the_crd_refuses_every_reserved_env_name() -> None:
    crd = (REPO / "manifests/crds/agentry.dev_agents.yaml").read_text()
    rule = next(line for line in crd.splitlines() if "self.startsWith('AGENTRY_')" in line)
    assert all(f"self.startsWith('{p}')" in rule for p in c.RESERVED_ENV_PREFIXES)
    assert all(f"'{name}'" in rule for name in c.RESERVED_ENV)
