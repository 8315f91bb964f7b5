"""The Agent's prompt caching and context settings reach the runtime with the rest of its spec (the
run's agent.json), and a run whose conversation cannot fit its model's window ends
`ContextWindowExceeded`, final (the Job is not retried)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentry_common.conditions import Reason
from agentry_common.exitcodes import FINAL, REASONS, ExitCode
from agentry_common.models import Compaction, Phase
from agentry_operator.builders.execution_status import observe
from agentry_operator.builders.job import ANNOTATION_AGENT, build_job
from agentry_operator.settings import Settings
from agentry_workspace.config import parse_agent_document

from .test_builders import AGENT, EXECUTION

pytestmark = pytest.mark.unit


def runtime_spec(agent: dict[str, Any]) -> Any:
    job = build_job(EXECUTION, agent, "corr", Settings())
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    return parse_agent_document(json.loads(annotations[ANNOTATION_AGENT]), "agent.json")[2]


def test_the_agents_caching_and_context_settings_reach_the_runtime() -> None:
    settings = {"promptCaching": {"enabled": True, "ttl": "1h"}, "context": {"compaction": "off"}}
    spec = runtime_spec({**AGENT, "spec": {**AGENT["spec"], **settings}})
    assert spec.prompt_caching.ttl == "1h" and spec.context.compaction is Compaction.OFF
    assert spec.context.threshold_percent == 80
    defaults = runtime_spec(AGENT)  # unset: caching on (5m), compaction auto at 80 %
    assert (defaults.prompt_caching.enabled, defaults.prompt_caching.ttl) == (True, "5m")
    assert defaults.context.compaction is Compaction.AUTO


def test_a_conversation_too_large_for_the_window_ends_context_window_exceeded_without_retry() -> None:
    code = ExitCode.CONTEXT_OVERFLOW
    assert code in FINAL and Reason(REASONS[code][0]) is Reason.CONTEXT_WINDOW_EXCEEDED
    summary = (
        "Stopped: the conversation needs about 250000 tokens plus 8192 for the answer even after compaction"
    )
    report = json.dumps({"stopReason": "context_overflow", "summary": summary})
    terminated = {"state": {"terminated": {"exitCode": int(code), "message": report}}}
    pod = {"metadata": {"name": "p"}, "status": {"phase": "Failed", "containerStatuses": [terminated]}}
    policy = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]
    seen = observe({"spec": {}, "status": {"conditions": policy}}, [pod])
    assert (seen.phase, seen.reason) == (Phase.FAILED, Reason.CONTEXT_WINDOW_EXCEEDED)
    assert seen.message.endswith(f"(exit code 16): {summary}")
    job = build_job(EXECUTION, AGENT, "corr", Settings())
    fail_job = job["spec"]["podFailurePolicy"]["rules"][0]
    assert 16 in fail_job["onExitCodes"]["values"] and fail_job["action"] == "FailJob"
