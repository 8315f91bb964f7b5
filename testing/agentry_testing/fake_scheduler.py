"""A local stand-in for Google Cloud Scheduler (gRPC, in memory): see gcp_fakes.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc  # type: ignore[import-untyped]
from google.cloud import scheduler_v1
from google.protobuf import empty_pb2

from .grpc_fake import Abort, FakeService, Handler, now

SCHEDULER_SERVICE = "google.cloud.scheduler.v1.CloudScheduler"
_PARENT = re.compile(r"^projects/[A-Za-z0-9:.-]+/locations/[a-z0-9-]+$")
_JOB = re.compile(r"^(projects/[A-Za-z0-9:.-]+/locations/[a-z0-9-]+)/jobs/[A-Za-z0-9_-]{1,500}$")
# The Job fields UpdateJob may change (the others are output only or immutable).
_UPDATABLE = {
    "description",
    "schedule",
    "time_zone",
    "http_target",
    "pubsub_target",
    "app_engine_http_target",
    "retry_config",
    "attempt_deadline",
}


def _cron_problem(expr: str) -> str | None:
    fields = expr.split()
    if len(fields) != 5:
        return f"Schedule or time zone is invalid: {expr!r} is not a unix-cron expression (5 fields)"
    if not all(re.fullmatch(r"[0-9A-Za-z*/,\-]+", f) for f in fields):
        return f"Schedule or time zone is invalid: {expr!r}"
    return None


def _zone_problem(zone: str) -> str | None:
    if not zone or zone.lower() == "utc":
        return None
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"Schedule or time zone is invalid: unknown time zone {zone!r}"
    return None


class FakeCloudScheduler(FakeService):
    """Create/Get/Update/Pause/Resume/Delete/List Job."""

    name = SCHEDULER_SERVICE

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, scheduler_v1.Job] = {}

    def methods(self) -> dict[str, tuple[type[Any], Callable[[Any], bytes], Handler]]:
        s = scheduler_v1
        return {
            "CreateJob": (s.CreateJobRequest, s.Job.serialize, self._create),
            "GetJob": (s.GetJobRequest, s.Job.serialize, self._get),
            "UpdateJob": (s.UpdateJobRequest, s.Job.serialize, self._update),
            "PauseJob": (s.PauseJobRequest, s.Job.serialize, self._pause),
            "ResumeJob": (s.ResumeJobRequest, s.Job.serialize, self._resume),
            "DeleteJob": (s.DeleteJobRequest, empty_pb2.Empty.SerializeToString, self._delete),
            "ListJobs": (s.ListJobsRequest, s.ListJobsResponse.serialize, self._list),
        }

    @staticmethod
    def _validate(job: scheduler_v1.Job) -> None:
        problems = [_cron_problem(job.schedule), _zone_problem(job.time_zone)]
        if "http_target" in job:
            target = job.http_target
            if not re.match(r"^https?://[^/\s]+", target.uri):
                problems.append(f"HttpTarget.uri {target.uri!r} must be an absolute http(s) URL")
            if "oidc_token" in target and not target.oidc_token.service_account_email:
                problems.append("HttpTarget.oidc_token.service_account_email is required")
            if target.body and target.http_method not in (
                scheduler_v1.HttpMethod.POST,
                scheduler_v1.HttpMethod.PUT,
                scheduler_v1.HttpMethod.PATCH,
            ):
                problems.append("a body is allowed only with POST, PUT or PATCH")
        elif "pubsub_target" not in job and "app_engine_http_target" not in job:
            problems.append("a job needs a target")
        if len(job.description) > 500:
            problems.append("description is longer than 500 characters")
        found = [p for p in problems if p]
        if found:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(found))

    def _existing(self, name: str) -> scheduler_v1.Job:
        if not _JOB.match(name):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid job name: {name}")
        job = self.jobs.get(name)
        if job is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"Job not found: {name}.")
        return job

    @staticmethod
    def _copy(job: scheduler_v1.Job) -> scheduler_v1.Job:
        return cast(scheduler_v1.Job, scheduler_v1.Job.deserialize(scheduler_v1.Job.serialize(job)))

    def _create(self, request: scheduler_v1.CreateJobRequest) -> Any:
        if not _PARENT.match(request.parent):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid parent: {request.parent}")
        job = self._copy(request.job)
        match = _JOB.match(job.name)
        if not match or match.group(1) != request.parent:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"Job name {job.name!r} is not under {request.parent}"
            )
        if job.name in self.jobs:
            raise Abort(grpc.StatusCode.ALREADY_EXISTS, f"Job {job.name} already exists.")
        self._validate(job)
        job.state = scheduler_v1.Job.State.ENABLED  # type: ignore[assignment]  # output only
        job.user_update_time = now()
        self.jobs[job.name] = job
        return job

    def _get(self, request: scheduler_v1.GetJobRequest) -> Any:
        return self._existing(request.name)

    def _update(self, request: scheduler_v1.UpdateJobRequest) -> Any:
        current = self._existing(request.job.name)
        paths = list(request.update_mask.paths) or sorted(_UPDATABLE)
        unknown = [p for p in paths if p.split(".")[0] not in _UPDATABLE]
        if unknown:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Cannot update field(s): {', '.join(unknown)}")
        updated = self._copy(current)
        for path in paths:
            top = path.split(".")[0]
            if top in request.job:
                setattr(updated, top, getattr(request.job, top))
            else:
                updated.__delattr__(top)
        self._validate(updated)
        updated.user_update_time = now()
        self.jobs[updated.name] = updated
        return updated

    def _pause(self, request: scheduler_v1.PauseJobRequest) -> Any:
        job = self._existing(request.name)
        job.state = scheduler_v1.Job.State.PAUSED  # type: ignore[assignment]
        return job

    def _resume(self, request: scheduler_v1.ResumeJobRequest) -> Any:
        job = self._existing(request.name)
        job.state = scheduler_v1.Job.State.ENABLED  # type: ignore[assignment]
        return job

    def _delete(self, request: scheduler_v1.DeleteJobRequest) -> Any:
        self._existing(request.name)
        del self.jobs[request.name]
        return empty_pb2.Empty()

    def _list(self, request: scheduler_v1.ListJobsRequest) -> Any:
        if not _PARENT.match(request.parent):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"Invalid parent: {request.parent}")
        names = sorted(n for n in self.jobs if n.startswith(request.parent + "/jobs/"))
        start = int(request.page_token or 0)
        size = request.page_size or 500
        page = names[start : start + size]
        token = str(start + size) if start + size < len(names) else ""
        return scheduler_v1.ListJobsResponse(jobs=[self.jobs[n] for n in page], next_page_token=token)
