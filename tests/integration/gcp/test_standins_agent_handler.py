"""handlers/agent.py's Cloud Scheduler ordering on a real API server: the job's name is recorded on the
Agent before the job is created, so an operator that crashes right after the create leaves a trace
its finalizer (and its next reconcile) can find; failures show on Ready and keep the ref.

`reconcile_agent` and `delete_agent_schedule` run in the test's process with a real lightkube client
on a control plane of this module's own (no operator acts on these Agents), and the real Cloud
Scheduler backend on the local Cloud Scheduler gRPC fake (the service cannot be reached from here).
`Observed` wraps that backend only to look at the API server the moment `ensure` is called and, for
the crash test, to stop the reconcile right after the job was created.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import kopf
import pytest
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.resources.batch_v1 import CronJob
from lightkube.types import PatchType

from agentry_common.models import AgentStatus
from agentry_common.naming import cronjob_name
from agentry_localcluster.kube import ControlPlane
from agentry_operator import kube
from agentry_operator.backends.cloudscheduler import CloudSchedulerBackend, CloudSchedulerSettings
from agentry_operator.builders.cronjob import build_cronjob
from agentry_operator.handlers.agent import delete_agent_schedule, reconcile_agent
from agentry_operator.handlers.state import State
from agentry_operator.settings import Settings
from agentry_testing.gcp_fakes import GcpFakes
from tests.fixtures.operator import own_control_plane
from tests.fixtures.servers import make_namespace, plane_client

pytestmark = pytest.mark.integration

LOG = logging.getLogger("test")
PROJECT, LOCATION = "p", "l"
RETRY = 42


class OperatorCrashed(BaseException):
    """The operator process dying: nothing in the handler catches it."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with own_control_plane(tmp_path_factory.mktemp("agent-handler-kube")) as plane:
        yield plane


@pytest.fixture(scope="module")
def client(plane: ControlPlane) -> Iterator[Client]:
    with plane_client(plane, "agent-handler-tests") as c:
        yield c


@pytest.fixture
def ns(client: Client) -> str:
    return make_namespace(client, "sched")


@pytest.fixture
async def api(plane: ControlPlane) -> AsyncIterator[AsyncClient]:
    """The operator's own kind of client (kube.new_client), on this module's control plane."""
    c = AsyncClient(KubeConfig.from_file(plane.kubeconfig), field_manager=kube.FIELD_MANAGER)
    yield c
    await c.close()


def scheduler_config(gcp: GcpFakes, location: str = LOCATION) -> Settings:
    return Settings(
        cloud_scheduler_project=PROJECT,
        cloud_scheduler_location=location,
        cloud_scheduler_target_url="https://agentry.example.com",
        cloud_scheduler_service_account="scheduler@p.iam.gserviceaccount.com",
        cloud_scheduler_endpoint=gcp.address,
        cloud_scheduler_timeout_seconds=10,
        cloud_scheduler_retry_seconds=RETRY,
    )


@pytest.fixture
async def backend(gcp: GcpFakes) -> AsyncIterator[CloudSchedulerBackend]:
    b = CloudSchedulerBackend(CloudSchedulerSettings.from_config(scheduler_config(gcp)))
    yield b
    await b.close()


class Observed:
    """The real backend; `seen` gets the Agent as the API server has it when `ensure` is called."""

    def __init__(
        self, real: CloudSchedulerBackend, api: AsyncClient, ns: str, crash_after_ensure: bool = False
    ) -> None:
        self.real, self.api, self.ns, self.crash = real, api, ns, crash_after_ensure
        self.seen: list[dict[str, Any]] = []

    def ref(self, agent: dict[str, Any]) -> str:
        return self.real.ref(agent)

    async def ensure(self, agent: dict[str, Any]) -> str:
        self.seen.append(await agent_now(self.api, self.ns, agent["metadata"]["name"]))
        name = await self.real.ensure(agent)
        if self.crash:
            raise OperatorCrashed(name)
        return name

    async def delete(self, ref: str) -> bool:
        return await self.real.delete(ref)

    async def close(self) -> None:
        pass


def agent_manifest(ns: str, backend: str | None = "CloudScheduler", name: str = "news") -> dict[str, Any]:
    spec: dict[str, Any] = {"instructions": "x", "model": {"name": "m"}}
    if backend:
        spec["schedule"] = {"cron": "0 8 * * 1", "backend": backend}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


async def agent_now(api: AsyncClient, ns: str, name: str = "news") -> dict[str, Any]:
    return kube.to_dict(await api.get(kube.Agent, name, namespace=ns))


async def make_agent(api: AsyncClient, ns: str, backend: str | None = "CloudScheduler") -> dict[str, Any]:
    await api.create(kube.Agent.from_dict(agent_manifest(ns, backend)))
    return await agent_now(api, ns)


def ready(agent: dict[str, Any]) -> dict[str, Any]:
    conditions = (agent.get("status") or {}).get("conditions") or []
    found = [c for c in conditions if c["type"] == "Ready"]
    assert len(found) == 1, conditions
    return dict(found[0])


def methods(gcp: GcpFakes) -> list[str]:
    with gcp.scheduler.lock:
        return [r.method for r in gcp.scheduler.requests]


def job_exists(gcp: GcpFakes, name: str) -> bool:
    with gcp.scheduler.lock:
        return name in gcp.scheduler.jobs


async def test_job_name_is_recorded_before_the_job_is_created(
    api: AsyncClient, ns: str, gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    body = await make_agent(api, ns)
    # A CronJob the Agent had before (backend CronJob): removed first.
    as_cron = copy.deepcopy(body)
    as_cron["spec"]["schedule"]["backend"] = "CronJob"
    await kube.apply(api, build_cronjob(as_cron, Settings()))
    cron_job = cronjob_name("news", body["metadata"]["uid"])
    assert await kube.get_or_none(api, CronJob, cron_job, ns) is not None

    observed = Observed(backend, api, ns)
    job = backend.ref(body)
    await reconcile_agent(api, scheduler_config(gcp), State(), body, LOG, observed)

    # When the backend was called, the API server had the intent, and only it (one write, no
    # conditions yet), and the CronJob was gone; nothing had been asked of Cloud Scheduler.
    (at_ensure,) = observed.seen
    assert at_ensure["status"] == {"scheduleRef": job}
    assert at_ensure["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]
    assert await kube.get_or_none(api, CronJob, cron_job, ns) is None
    assert methods(gcp) == ["GetJob", "CreateJob"]
    assert job_exists(gcp, job)

    status = (await agent_now(api, ns))["status"]
    assert status["scheduleRef"] == job and status["nextRunTime"]
    assert ready({"status": status})["status"] == "True"


async def test_known_job_is_not_recorded_again(
    api: AsyncClient, ns: str, gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    job = backend.ref(await make_agent(api, ns))
    body = await set_status(api, ns, {"scheduleRef": job})
    observed = Observed(backend, api, ns)
    await reconcile_agent(api, scheduler_config(gcp), State(), body, LOG, observed)
    (at_ensure,) = observed.seen
    # No write before the backend's call: the Agent was as the reconcile found it.
    assert at_ensure["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]
    after = await agent_now(api, ns)
    assert after["status"]["scheduleRef"] == job and ready(after)["status"] == "True"


async def test_a_crash_right_after_the_create_leaves_the_name_and_the_restart_adopts_the_job(
    api: AsyncClient, ns: str, gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    body = await make_agent(api, ns)
    job = backend.ref(body)
    with pytest.raises(OperatorCrashed):
        await reconcile_agent(
            api,
            scheduler_config(gcp),
            State(),
            body,
            LOG,
            Observed(backend, api, ns, crash_after_ensure=True),
        )
    # The job exists and the Agent names it (no status write after the create happened).
    assert job_exists(gcp, job)
    crashed = await agent_now(api, ns)
    assert crashed["status"] == {"scheduleRef": job}
    # The restarted operator reconciles what it finds: the same job, not a second one.
    observed = Observed(backend, api, ns)
    await reconcile_agent(api, scheduler_config(gcp), State(), crashed, LOG, observed)
    assert observed.seen[0]["metadata"]["resourceVersion"] == crashed["metadata"]["resourceVersion"]
    assert methods(gcp).count("CreateJob") == 1
    after = await agent_now(api, ns)
    assert after["status"]["scheduleRef"] == job and ready(after)["status"] == "True"


async def test_backend_failure_sets_ready_false_keeps_the_ref_and_retries(
    api: AsyncClient, ns: str, gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    body = await make_agent(api, ns)
    gcp.scheduler.fail_next("CreateJob", grpc.StatusCode.PERMISSION_DENIED, "no")
    with pytest.raises(kopf.TemporaryError) as err:
        await reconcile_agent(api, scheduler_config(gcp), State(), body, LOG, backend)
    assert err.value.delay == RETRY
    agent = await agent_now(api, ns)
    status = agent["status"]
    assert (ready(agent)["status"], ready(agent)["reason"]) == ("False", "CloudSchedulerError")
    assert "PermissionDenied" in ready(agent)["message"]
    assert status["scheduleRef"] == backend.ref(body) and status.get("nextRunTime") is None
    assert not job_exists(gcp, backend.ref(body))


async def test_not_configured_says_which_settings_and_does_not_retry(api: AsyncClient, ns: str) -> None:
    body = await make_agent(api, ns)
    await reconcile_agent(api, Settings(), State(), body, LOG, None)  # no TemporaryError
    agent = await agent_now(api, ns)
    assert (ready(agent)["status"], ready(agent)["reason"]) == ("False", "CloudSchedulerNotConfigured")
    assert "AGENTRY_CLOUD_SCHEDULER_LOCATION" in ready(agent)["message"]
    assert agent["status"].get("scheduleRef") is None


async def test_moving_to_cronjob_deletes_the_recorded_job(
    api: AsyncClient, ns: str, gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    body = await make_agent(api, ns)
    job = await backend.ensure(body)
    await kube.patch_status(api, kube.Agent, "news", ns, AgentStatus(schedule_ref=job))
    await api.patch(
        kube.Agent,
        "news",
        {"spec": {"schedule": {"backend": "CronJob"}}},
        namespace=ns,
        patch_type=PatchType.MERGE,
    )
    moved = await agent_now(api, ns)
    await reconcile_agent(api, scheduler_config(gcp), State(), moved, LOG, backend)
    deletes = [r.name for r in gcp.scheduler.calls("DeleteJob")]
    assert deletes == [job] and not job_exists(gcp, job)
    cron = cronjob_name("news", body["metadata"]["uid"])
    assert await kube.get_or_none(api, CronJob, cron, ns) is not None
    assert (await agent_now(api, ns))["status"]["scheduleRef"] == f"CronJob/{cron}"


async def test_a_job_that_cannot_be_deleted_keeps_its_ref(
    api: AsyncClient, ns: str, gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    job = backend.ref(await make_agent(api, ns, backend=None))
    body = await set_status(api, ns, {"scheduleRef": job})
    with pytest.raises(kopf.TemporaryError):
        await reconcile_agent(api, Settings(), State(), body, LOG, None)  # operator lost its settings
    status = (await agent_now(api, ns))["status"]
    assert status["scheduleRef"] == job  # the finalizer stays until the job is gone
    assert "cannot delete Cloud Scheduler job" in ready({"status": status})["message"]


async def test_delete_handler_deletes_recorded_and_computed_jobs(
    api: AsyncClient, ns: str, gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    body = await make_agent(api, ns)
    old_backend = CloudSchedulerBackend(CloudSchedulerSettings.from_config(scheduler_config(gcp, "old")))
    try:
        old = await old_backend.ensure(body)  # made while the operator was set up for another location
    finally:
        await old_backend.close()
    computed = await backend.ensure(body)
    assert old != computed and job_exists(gcp, old) and job_exists(gcp, computed)
    body = await set_status(api, ns, {"scheduleRef": old})
    await delete_agent_schedule(scheduler_config(gcp), backend, body, LOG)
    assert sorted(r.name for r in gcp.scheduler.calls("DeleteJob")) == sorted([old, computed])
    assert not job_exists(gcp, old) and not job_exists(gcp, computed)


async def set_status(api: AsyncClient, ns: str, status: dict[str, Any]) -> dict[str, Any]:
    """The Agent's status as an earlier reconcile left it; returns the Agent as the API server has it."""
    await kube.patch_status(api, kube.Agent, "news", ns, AgentStatus.model_validate(status))
    return await agent_now(api, ns)
