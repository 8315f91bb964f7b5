"""handlers/agent.py with a stub API client and a stub schedule backend: ordering and status."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from agentry_operator.backends import BackendError
from agentry_operator.config import OperatorConfig
from agentry_operator.handlers.agent import delete_agent_schedule, reconcile_agent
from agentry_operator.handlers.state import State

pytestmark = pytest.mark.unit

LOG = logging.getLogger("test")
JOB = "projects/p/locations/l/jobs/agentry-ns-news-1"


class StubClient:
    """Records the calls kube.py makes on lightkube's AsyncClient."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    async def patch(self, res: Any, name: str, body: dict[str, Any], **_: Any) -> None:
        self.log.append(("patch", body))

    async def delete(self, res: Any, name: str, **_: Any) -> None:
        self.log.append(("delete", res.__name__))

    async def apply(self, obj: Any, **_: Any) -> Any:
        self.log.append(("apply", obj.kind))
        return obj


class StubBackend:
    def __init__(self, log: list[tuple[str, Any]], fail: BackendError | None = None) -> None:
        self.log, self.fail = log, fail

    def ref(self, agent: dict[str, Any]) -> str:
        return JOB

    async def ensure(self, agent: dict[str, Any]) -> str:
        self.log.append(("ensure", agent["spec"]["schedule"].get("suspend", False)))
        if self.fail:
            raise self.fail
        return JOB

    async def delete(self, ref: str) -> bool:
        self.log.append(("delete-job", ref))
        return True

    async def close(self) -> None:
        pass


def agent(backend: str | None = "CloudScheduler", status: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"instructions": "x", "model": {"name": "m"}}
    if backend:
        spec["schedule"] = {"cron": "0 8 * * 1", "backend": backend}
    return {
        "metadata": {"name": "news", "namespace": "ns", "uid": "u1", "generation": 2},
        "spec": spec,
        "status": status or {},
    }


def run(body: dict[str, Any], backend: StubBackend | None, log: list[tuple[str, Any]]) -> None:
    asyncio.run(reconcile_agent(StubClient(log), OperatorConfig(), State(), body, LOG, backend))  # type: ignore[arg-type]


def final_status(log: list[tuple[str, Any]]) -> dict[str, Any]:
    return dict([entry for entry in log if entry[0] == "patch"][-1][1]["status"])


def test_job_name_is_recorded_before_the_job_is_created() -> None:
    log: list[tuple[str, Any]] = []
    run(agent(), StubBackend(log), log)
    steps = [entry[0] for entry in log]
    assert steps == ["delete", "patch", "ensure", "patch"]  # CronJob gone, intent, job, status
    assert log[1][1] == {"status": {"scheduleRef": JOB}}
    status = final_status(log)
    assert status["scheduleRef"] == JOB and status["nextRunTime"]
    assert status["conditions"][0]["status"] == "True"


def test_known_job_is_not_recorded_again() -> None:
    log: list[tuple[str, Any]] = []
    run(agent(status={"scheduleRef": JOB}), StubBackend(log), log)
    assert [entry[0] for entry in log] == ["delete", "ensure", "patch"]


def test_backend_failure_sets_ready_false_keeps_the_ref_and_retries() -> None:
    log: list[tuple[str, Any]] = []
    failure = BackendError("CloudSchedulerError", "creating Cloud Scheduler job x: PermissionDenied: no", 42)
    with pytest.raises(kopf.TemporaryError) as err:
        run(agent(), StubBackend(log, failure), log)
    assert err.value.delay == 42
    status = final_status(log)
    ready = status["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "CloudSchedulerError")
    assert "PermissionDenied" in ready["message"]
    assert status["scheduleRef"] == JOB and status["nextRunTime"] is None


def test_not_configured_says_which_settings_and_does_not_retry() -> None:
    log: list[tuple[str, Any]] = []
    run(agent(), None, log)
    ready = final_status(log)["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "CloudSchedulerNotConfigured")
    assert "AGENTRY_CLOUD_SCHEDULER_LOCATION" in ready["message"]
    assert final_status(log)["scheduleRef"] is None


def test_moving_to_cronjob_deletes_the_recorded_job() -> None:
    log: list[tuple[str, Any]] = []
    run(agent("CronJob", {"scheduleRef": JOB}), StubBackend(log), log)
    assert ("delete-job", JOB) in log and ("apply", "CronJob") in log
    assert final_status(log)["scheduleRef"].startswith("CronJob/")


def test_a_job_that_cannot_be_deleted_keeps_its_ref() -> None:
    log: list[tuple[str, Any]] = []
    with pytest.raises(kopf.TemporaryError):
        run(agent(None, {"scheduleRef": JOB}), None, log)  # operator lost its settings
    status = final_status(log)
    assert status["scheduleRef"] == JOB  # the finalizer stays until the job is gone
    assert "cannot delete Cloud Scheduler job" in status["conditions"][0]["message"]


def test_delete_handler_deletes_recorded_and_computed_jobs() -> None:
    log: list[tuple[str, Any]] = []
    old = "projects/p/locations/old/jobs/agentry-ns-news-1"
    asyncio.run(
        delete_agent_schedule(OperatorConfig(), StubBackend(log), agent(status={"scheduleRef": old}), LOG)
    )  # type: ignore[arg-type]
    assert sorted(ref for kind, ref in log if kind == "delete-job") == sorted([old, JOB])


def test_delete_handler_without_settings_waits_unless_nothing_was_created() -> None:
    asyncio.run(delete_agent_schedule(OperatorConfig(), None, agent(), LOG))  # nothing recorded: done
    with pytest.raises(kopf.TemporaryError, match="remove the finalizer"):
        asyncio.run(delete_agent_schedule(OperatorConfig(), None, agent(status={"scheduleRef": JOB}), LOG))
