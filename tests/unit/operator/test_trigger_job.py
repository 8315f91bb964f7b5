"""A Webhook run's Job tells the runtime that its input is untrusted (AGENTRY_INPUT_UNTRUSTED); no
other run's does; the steps of a WorkflowRun a trigger started are Webhook runs."""

from __future__ import annotations

from typing import Any

import pytest

from agentry_operator.builders.job import build_job
from agentry_operator.settings import Settings
from agentry_operator.workflows.step import build_execution

pytestmark = pytest.mark.unit


def test_only_a_webhook_runs_pod_is_told_its_input_is_untrusted() -> None:
    agent = {
        "metadata": {"name": "news", "namespace": "ns", "uid": "a-uid"},
        "spec": {"instructions": "x", "model": {"name": "m"}},
    }

    def env(trigger: str) -> dict[str, Any]:
        execution = {
            "metadata": {"name": "run", "namespace": "ns", "uid": "e-uid"},
            "spec": {"agentRef": {"name": "news"}, "trigger": trigger, "input": "hi"},
        }
        job = build_job(execution, agent, "corr", Settings())
        return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert env("Webhook")["AGENTRY_INPUT_UNTRUSTED"] == "1"
    assert all("AGENTRY_INPUT_UNTRUSTED" not in env(t) for t in ("Manual", "API", "Schedule"))


def test_a_workflow_run_a_trigger_started_passes_webhook_on_to_its_steps() -> None:
    run = {
        "metadata": {"name": "r", "namespace": "ns", "uid": "u", "labels": {"agentry.dev/trigger": "Webhook"}}
    }
    run["spec"] = {"workflowRef": {"name": "w"}}
    step = {"name": "s", "agentRef": {"name": "a"}}
    assert build_execution(run, step, 1, "x")["spec"]["trigger"] == "Webhook"
    run["metadata"]["labels"] = {"agentry.dev/trigger": "Schedule"}
    assert build_execution(run, step, 1, "x")["spec"]["trigger"] == "Manual"
