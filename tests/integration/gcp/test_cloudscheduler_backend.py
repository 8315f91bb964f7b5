"""The Cloud Scheduler backend's real async client against the local Cloud Scheduler gRPC fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.cloud import scheduler_v1

from agentry_operator.backends import BackendError
from agentry_operator.backends.cloudscheduler import CloudSchedulerBackend, CloudSchedulerSettings
from agentry_operator.settings import Settings
from agentry_testing.gcp_fakes import GcpFakes

pytestmark = pytest.mark.integration

PAUSED, ENABLED = scheduler_v1.Job.State.PAUSED, scheduler_v1.Job.State.ENABLED


def agent(uid: str = "uid-1", **schedule: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "news", "namespace": "team-a", "uid": uid},
        "spec": {
            "instructions": "x",
            "model": {"name": "m"},
            "schedule": {
                "cron": "0 8 * * 1",
                "timeZone": "Asia/Seoul",
                "backend": "CloudScheduler",
                **schedule,
            },
        },
    }


@pytest.fixture
async def backend(gcp: GcpFakes) -> AsyncIterator[CloudSchedulerBackend]:
    config = Settings(
        cloud_scheduler_project="proj-1",
        cloud_scheduler_location="europe-west1",
        cloud_scheduler_target_url="https://agentry.example.com",
        cloud_scheduler_service_account="scheduler@proj-1.iam.gserviceaccount.com",
        cloud_scheduler_endpoint=gcp.address,
        cloud_scheduler_timeout_seconds=3,
        cloud_scheduler_retry_seconds=7,
    )
    b = CloudSchedulerBackend(CloudSchedulerSettings.from_config(config))
    yield b
    await b.close()


def methods(gcp: GcpFakes) -> list[str]:
    return [r.method for r in gcp.scheduler.requests]


async def test_create_update_pause_resume_delete(gcp: GcpFakes, backend: CloudSchedulerBackend) -> None:
    name = await backend.ensure(agent())
    assert name == backend.ref(agent())
    job = gcp.scheduler.jobs[name]
    assert (job.schedule, job.time_zone, job.state) == ("0 8 * * 1", "Asia/Seoul", ENABLED)
    assert job.http_target.uri == "https://agentry.example.com/api/agents/team-a/news/runs"
    assert job.http_target.oidc_token.service_account_email == "scheduler@proj-1.iam.gserviceaccount.com"
    assert methods(gcp) == ["GetJob", "CreateJob"]

    gcp.scheduler.requests.clear()
    await backend.ensure(agent())  # nothing changed: one read, no write
    assert methods(gcp) == ["GetJob"]

    gcp.scheduler.requests.clear()
    await backend.ensure(agent(cron="@daily"))
    assert methods(gcp) == ["GetJob", "UpdateJob"]
    assert list(gcp.scheduler.calls("UpdateJob")[0].update_mask.paths) == ["schedule"]
    assert gcp.scheduler.jobs[name].schedule == "0 0 * * *"

    await backend.ensure(agent(cron="@daily", suspend=True))
    assert gcp.scheduler.jobs[name].state == PAUSED
    gcp.scheduler.requests.clear()
    await backend.ensure(agent(cron="@daily", suspend=True))
    assert methods(gcp) == ["GetJob"]  # already paused
    await backend.ensure(agent(cron="@daily"))
    assert gcp.scheduler.jobs[name].state == ENABLED and methods(gcp)[-1] == "ResumeJob"

    assert await backend.delete(name) is True
    assert name not in gcp.scheduler.jobs
    assert await backend.delete(name) is False  # 404 tolerated


async def test_suspended_from_the_start_is_created_paused(
    gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    name = await backend.ensure(agent(suspend=True))
    assert gcp.scheduler.jobs[name].state == PAUSED
    assert methods(gcp) == ["GetJob", "CreateJob", "PauseJob"]


async def test_a_re_created_agent_gets_its_own_job(gcp: GcpFakes, backend: CloudSchedulerBackend) -> None:
    first, second = await backend.ensure(agent("uid-1")), await backend.ensure(agent("uid-2"))
    assert first != second and {first, second} <= set(gcp.scheduler.jobs)


async def test_create_race_409_reads_the_winner(gcp: GcpFakes, backend: CloudSchedulerBackend) -> None:
    name = await backend.ensure(agent())  # the "other" reconcile, first to create
    gcp.scheduler.requests.clear()
    gcp.scheduler.fail_next("GetJob", grpc.StatusCode.NOT_FOUND, "not visible yet")
    assert await backend.ensure(agent()) == name
    assert methods(gcp) == ["GetJob", "CreateJob", "GetJob"]  # 409, then read what is there
    assert len(gcp.scheduler.jobs) == 1


async def test_job_deleted_behind_our_back_is_recreated(
    gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    name = await backend.ensure(agent(suspend=True))
    del gcp.scheduler.jobs[name]
    await backend.ensure(agent(suspend=True))
    assert gcp.scheduler.jobs[name].state == PAUSED
    assert methods(gcp)[-3:] == ["GetJob", "CreateJob", "PauseJob"]


async def test_transient_errors_are_retried_within_the_deadline(
    gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    gcp.scheduler.fail_next("GetJob", grpc.StatusCode.UNAVAILABLE, "blip", times=2)
    name = await backend.ensure(agent())
    assert name in gcp.scheduler.jobs and methods(gcp)[:3] == ["GetJob", "GetJob", "GetJob"]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (grpc.StatusCode.PERMISSION_DENIED, "CloudSchedulerError"),
        (grpc.StatusCode.INVALID_ARGUMENT, "CloudSchedulerError"),
        (grpc.StatusCode.UNAVAILABLE, "CloudSchedulerUnavailable"),  # after retrying to the deadline
    ],
)
async def test_failures_become_backend_errors(
    gcp: GcpFakes, backend: CloudSchedulerBackend, code: grpc.StatusCode, reason: str
) -> None:
    gcp.scheduler.fail_next("CreateJob", code, "refused by the fake", times=100)
    with pytest.raises(BackendError) as err:
        await backend.ensure(agent())
    assert err.value.reason == reason and err.value.retry_seconds == 7
    assert "creating Cloud Scheduler job projects/proj-1/locations/europe-west1/jobs/" in err.value.message
    assert "refused by the fake" in err.value.message


async def test_the_service_refuses_what_it_would_refuse(
    gcp: GcpFakes, backend: CloudSchedulerBackend
) -> None:
    # The fake validates like the service: an unknown zone is INVALID_ARGUMENT, reported as such.
    with pytest.raises(BackendError) as err:
        await backend.ensure(agent(timeZone="Mars/Olympus"))
    assert "InvalidArgument" in err.value.message and "Mars/Olympus" in err.value.message


async def test_list_pages_through_jobs(gcp: GcpFakes, backend: CloudSchedulerBackend) -> None:
    for i in range(5):
        await backend.ensure(agent(f"uid-{i}"))
    request = scheduler_v1.ListJobsRequest(parent=backend.settings.parent, page_size=2)
    pager = await backend.client.list_jobs(request=request)
    names = [job.name async for job in pager]
    assert len(names) == 5 and len(gcp.scheduler.calls("ListJobs")) == 3
