"""Every status write goes through kube.patch_status with the status model of its kind: a field the
model lacks cannot be written, unset fields are left out, and a field set to None is deleted."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from lightkube import AsyncClient
from pydantic import ValidationError

from agentry_common import workflows as w
from agentry_common.models import AgentStatus, ExecutionStatus, Phase
from agentry_operator import kube
from agentry_operator.workflows.resources import Workflow

pytestmark = pytest.mark.unit


class Recorder:
    """A client that keeps the merge patches it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, str, dict[str, Any]]] = []

    async def patch(self, res: Any, name: str, body: dict[str, Any], **_: object) -> None:
        self.sent.append((res, name, body))


def _write(status: Any, res: Any = kube.Execution, rv: str | None = None) -> dict[str, Any]:
    client = Recorder()
    asyncio.run(kube.patch_status(cast(AsyncClient, client), res, "x", "ns", status, resource_version=rv))
    ((sent_res, name, body),) = client.sent
    assert sent_res is res.Status and name == "x"
    return body


def test_a_misspelt_status_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="jobname"):
        ExecutionStatus.model_validate({"phase": "Running", "jobname": "j"})
    with pytest.raises(ValidationError):
        AgentStatus(nextRuntime="2026-01-01T00:00:00Z")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        ExecutionStatus().jobname = "j"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError, match="lastSkipped"):
        w.WorkflowStatus.model_validate({"scheduleState": {"lastSkipped": {"count": 1, "reason": "Late"}}})


def test_only_the_status_model_of_the_kind_is_written() -> None:
    with pytest.raises(TypeError):
        _write({"phase": "Running"})
    with pytest.raises(TypeError):
        _write(AgentStatus(model="m"))
    with pytest.raises(TypeError):
        _write(ExecutionStatus(phase=Phase.RUNNING), Workflow)


def test_the_patch_has_the_fields_set_and_none_deletes() -> None:
    body = _write(ExecutionStatus(phase=Phase.RUNNING, job_name="j", approval=None), rv="7")
    assert body == {
        "status": {"phase": "Running", "jobName": "j", "approval": None},
        "metadata": {"resourceVersion": "7"},
    }
    run = w.WorkflowStatus(last_run=w.LastRun(name="r", phase=w.RunPhase.SUCCEEDED, cost_usd="0.5"))
    assert _write(run, Workflow) == {
        "status": {"lastRun": {"name": "r", "phase": "Succeeded", "costUSD": "0.5"}}
    }
